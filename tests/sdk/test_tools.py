"""The official OpenAI and Anthropic SDKs, pointed at staunch-mock, get tool
calls (and structured output) that they parse into their own types.

Nothing here is stubbed: each test sends real HTTP to the mock on loopback
and reads the answer through the SDK's own parsing.
"""

import enum
import json

import anthropic
import openai
import pytest
from anthropic.types import TextBlock, ToolUseBlock
from openai.types.chat import ChatCompletionMessageToolCall
from pydantic import BaseModel

from wire import (
    MODEL_OPENAI,
    MODEL_ANTHROPIC,
    OPENAI_TOOLS,
    ANTHROPIC_TOOLS,
    FunctionToolCall,
)


@pytest.fixture
def oai(mock_url):
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-test", max_retries=0, timeout=10) as client:
        yield client


@pytest.fixture
def ant(mock_url):
    with anthropic.Anthropic(base_url=mock_url, api_key="sk-ant-test", max_retries=0, timeout=10) as client:
        yield client


# --- OpenAI Chat Completions -------------------------------------------------


def test_openai_tool_call_then_tool_result(oai):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages, tools=OPENAI_TOOLS)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls, choice.message
    call = choice.message.tool_calls[0]
    assert isinstance(call, (ChatCompletionMessageToolCall, FunctionToolCall)), type(call)
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments.get("city"), str), arguments

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "21 C"},
    ]
    follow_up = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages, tools=OPENAI_TOOLS)
    choice = follow_up.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert "21 C" in choice.message.content


def test_openai_json_schema_response_format(oai):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "temperature_c": {"type": "number"},
            "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain"]},
            "alerts": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["city", "temperature_c", "conditions", "alerts"],
        "additionalProperties": False,
    }
    completion = oai.chat.completions.create(
        model=MODEL_OPENAI,
        messages=[{"role": "user", "content": "The weather in Paris, as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "n", "schema": schema, "strict": True},
        },
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    answer = json.loads(choice.message.content)
    assert set(answer) == set(schema["required"]), answer
    assert isinstance(answer["city"], str)
    assert isinstance(answer["temperature_c"], (int, float)) and not isinstance(answer["temperature_c"], bool)
    assert answer["conditions"] in schema["properties"]["conditions"]["enum"]
    assert isinstance(answer["alerts"], list) and all(isinstance(a, str) for a in answer["alerts"])


class Conditions(str, enum.Enum):
    sunny = "sunny"
    cloudy = "cloudy"
    rain = "rain"


class Wind(BaseModel):
    speed_kmh: float
    direction: str


class Weather(BaseModel):
    city: str
    temperature_c: float
    conditions: Conditions
    wind: Wind
    alerts: list[str]


def _parse_method(client):
    """`chat.completions.parse` (openai >= 1.92), or the older beta one."""
    for owner in (client.chat.completions, getattr(getattr(client, "beta", None), "chat", None)):
        if owner is None:
            continue
        completions = getattr(owner, "completions", owner)
        if hasattr(completions, "parse"):
            return completions.parse
    pytest.skip(f"openai {openai.__version__} has no chat.completions.parse")


def test_openai_parse_into_pydantic_model(oai):
    # The SDK sends the model's strict JSON schema ($defs, $ref, enum,
    # additionalProperties: false) and validates the answer against the model.
    parse = _parse_method(oai)
    completion = parse(
        model=MODEL_OPENAI,
        messages=[{"role": "user", "content": "The weather in Paris."}],
        response_format=Weather,
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, Weather), message
    assert isinstance(message.parsed.wind, Wind)
    assert isinstance(message.parsed.conditions, Conditions)


def test_openai_parse_tool_arguments_into_pydantic_model(oai):
    # A strict function tool made from a pydantic model: the SDK parses the
    # call's arguments into the model.
    if not hasattr(openai, "pydantic_function_tool"):
        pytest.skip(f"openai {openai.__version__} has no pydantic_function_tool")
    parse = _parse_method(oai)
    completion = parse(
        model=MODEL_OPENAI,
        messages=[{"role": "user", "content": "Report the weather in Paris."}],
        tools=[openai.pydantic_function_tool(Weather, name="report_weather")],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "report_weather"
    assert isinstance(call.function.parsed_arguments, Weather), call


# --- Anthropic Messages -------------------------------------------------------


def test_anthropic_tool_use_then_tool_result(ant):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages)

    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1, message.content
    use = uses[0]
    assert isinstance(use, ToolUseBlock), type(use)
    assert use.id
    assert use.name == "get_weather"
    assert isinstance(use.input["city"], str), use.input

    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21 C"}],
        },
    ]
    follow_up = ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages)
    assert follow_up.stop_reason == "end_turn"
    texts = [block for block in follow_up.content if isinstance(block, TextBlock)]
    assert texts, follow_up.content
    assert "21 C" in "".join(block.text for block in texts)


def test_anthropic_tool_runner_round_trip(ant):
    # The SDK's own agent loop: it parses the tool_use input, calls the
    # Python function with it, sends the tool_result back, and stops at text.
    if not hasattr(anthropic, "beta_tool") or not hasattr(ant.beta.messages, "tool_runner"):
        pytest.skip(f"anthropic {anthropic.__version__} has no tool runner")
    calls = []

    @anthropic.beta_tool
    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: The city's name.
        """
        calls.append(city)
        return f"21 C in {city}"

    runner = ant.beta.messages.tool_runner(
        model=MODEL_ANTHROPIC,
        max_tokens=256,
        max_iterations=4,
        tools=[get_weather],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    final = runner.until_done()
    assert len(calls) == 1 and isinstance(calls[0], str), calls
    assert final.stop_reason == "end_turn"
    assert f"21 C in {calls[0]}" in "".join(block.text for block in final.content if block.type == "text")
