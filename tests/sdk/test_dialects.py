"""Every official SDK through the gateway, over every provider kind (issue 24).

Four clients (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages,
google-genai) each talk to the routes `via-openai`, `via-anthropic`,
`via-gemini` and `via-openai-responses` of one staunch-gateway, whose
providers of those kinds all point at one staunch-mock: every request is
read by the gateway in the client's dialect, sent upstream in the
provider's, and the answer translated back, whole and streamed, tool calls
and tool results included. The OpenAI Agents SDK then runs an agent with
one function tool whose conversation falls back, mid-way, from a Responses
provider to an Anthropic one. Real HTTP on loopback only.
"""

import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as gtypes

from conftest import AGENT_ROUTE, FALLBACK_MODEL, PROVIDER_KINDS, SMALL_WINDOW_MODEL
from wire import ANTHROPIC_TOOLS, OPENAI_TOOLS, PROMPT, WEATHER_SCHEMA, mock_text

ROUTES = [f"via-{kind}" for kind in PROVIDER_KINDS]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": WEATHER_SCHEMA,
    }
]
WEATHER = "Sunny and 21 degrees."


def upstream(route):
    """The model the route's one target names (see conftest)."""
    return "upstream-" + route.removeprefix("via-")


@pytest.fixture
def oai(dialects_gateway):
    with openai.OpenAI(
        base_url=f"{dialects_gateway.url}/v1", api_key=dialects_gateway.key, max_retries=0, timeout=20
    ) as client:
        yield client


@pytest.fixture
def ant(dialects_gateway):
    with anthropic.Anthropic(
        base_url=dialects_gateway.url, api_key=dialects_gateway.key, max_retries=0, timeout=20
    ) as client:
        yield client


@pytest.fixture
def gem(dialects_gateway):
    client = genai.Client(
        api_key=dialects_gateway.key,
        http_options=gtypes.HttpOptions(base_url=dialects_gateway.url, api_version="v1beta", timeout=20_000),
    )
    yield client
    client.close()


# --- OpenAI Chat Completions -------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_openai_chat(oai, route):
    raw = oai.chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "user", "content": PROMPT}]
    )
    assert raw.headers["x-staunch-model"] == upstream(route)
    completion = raw.parse()
    assert completion.choices[0].message.content == mock_text(PROMPT)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0

    stream = oai.chat.completions.create(
        model=route, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock_text(PROMPT)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


@pytest.mark.parametrize("route", ROUTES)
def test_openai_chat_tool_round(oai, route):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = oai.chat.completions.create(model=route, messages=messages, tools=OPENAI_TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": WEATHER},
    ]
    second = oai.chat.completions.create(model=route, messages=messages, tools=OPENAI_TOOLS)
    assert second.choices[0].message.content == f"Tool result: {WEATHER}"


# --- OpenAI Responses --------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses(oai, route):
    raw = oai.responses.with_raw_response.create(model=route, input=PROMPT, instructions="Be brief.")
    assert raw.headers["x-staunch-model"] == upstream(route)
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == mock_text(PROMPT)
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0

    events = list(oai.responses.create(model=route, input=PROMPT, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert "response.failed" not in types
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == mock_text(PROMPT)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == mock_text(PROMPT)


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses_tool_round(oai, route):
    items = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = oai.responses.create(model=route, input=items, tools=RESPONSES_TOOLS, store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"], first.output
    assert "city" in json.loads(calls[0].arguments)
    items += [c.model_dump(exclude_none=True) for c in first.output]
    items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": WEATHER})
    second = oai.responses.create(model=route, input=items, tools=RESPONSES_TOOLS, store=False)
    assert second.output_text == f"Tool result: {WEATHER}"

    streamed = list(oai.responses.create(model=route, input=items[:1], tools=RESPONSES_TOOLS, stream=True))
    done = [e for e in streamed if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and "city" in json.loads(done[0].arguments)
    assert streamed[-1].type == "response.completed"


def test_openai_responses_state_is_refused_plainly(oai):
    with pytest.raises(openai.BadRequestError) as stored:
        oai.responses.create(model="via-openai", input=PROMPT, store=True)
    assert "store" in str(stored.value) and "state" in str(stored.value)
    with pytest.raises(openai.BadRequestError) as chained:
        oai.responses.create(model="via-openai", input=PROMPT, previous_response_id="resp_123")
    assert "previous_response_id" in str(chained.value)


# --- Anthropic Messages ------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_anthropic_messages(ant, route):
    raw = ant.messages.with_raw_response.create(
        model=route, max_tokens=128, messages=[{"role": "user", "content": PROMPT}]
    )
    assert raw.headers["x-staunch-model"] == upstream(route)
    message = raw.parse()
    assert message.content[0].text == mock_text(PROMPT)
    assert message.stop_reason == "end_turn"

    with ant.messages.stream(model=route, max_tokens=128, messages=[{"role": "user", "content": PROMPT}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == mock_text(PROMPT)
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("route", ROUTES)
def test_anthropic_tool_round(ant, route):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = ant.messages.create(model=route, max_tokens=128, messages=messages, tools=ANTHROPIC_TOOLS)
    assert first.stop_reason == "tool_use"
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.name == "get_weather" and "city" in use.input
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": WEATHER}]},
    ]
    second = ant.messages.create(model=route, max_tokens=128, messages=messages, tools=ANTHROPIC_TOOLS)
    assert second.content[0].text == f"Tool result: {WEATHER}"


# --- google-genai ------------------------------------------------------------


def _weather_config():
    return gtypes.GenerateContentConfig(
        system_instruction="Answer briefly.",
        tools=[
            gtypes.Tool(
                function_declarations=[
                    gtypes.FunctionDeclaration(
                        name="get_weather",
                        description="The current weather in a city.",
                        parameters_json_schema=WEATHER_SCHEMA,
                    )
                ]
            )
        ],
        automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
    )


@pytest.mark.parametrize("route", ROUTES)
def test_gemini_generate_content(gem, route):
    response = gem.models.generate_content(model=route, contents=PROMPT)
    assert response.text == mock_text(PROMPT)
    assert response.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert response.model_version == upstream(route)
    assert response.usage_metadata.prompt_token_count > 0
    assert response.usage_metadata.candidates_token_count > 0

    chunks = list(gem.models.generate_content_stream(model=route, contents=PROMPT))
    assert len(chunks) > 1, "the mock streams text in pieces"
    assert "".join(c.text or "" for c in chunks) == mock_text(PROMPT)
    assert chunks[-1].candidates[0].finish_reason == gtypes.FinishReason.STOP


@pytest.mark.parametrize("route", ROUTES)
def test_gemini_function_round(gem, route):
    question = gtypes.Content(role="user", parts=[gtypes.Part.from_text(text="What is the weather in Paris?")])
    first = gem.models.generate_content(model=route, contents=[question], config=_weather_config())
    calls = first.function_calls
    assert calls and calls[0].name == "get_weather" and "city" in calls[0].args, first
    answer = gtypes.Content(
        role="user",
        parts=[gtypes.Part.from_function_response(name="get_weather", response={"result": WEATHER})],
    )
    second = gem.models.generate_content(
        model=route, contents=[question, first.candidates[0].content, answer], config=_weather_config()
    )
    assert second.text is not None and WEATHER in second.text, second


def test_gemini_errors_are_google_errors(dialects_gateway):
    client = genai.Client(
        api_key="not-a-key",
        http_options=gtypes.HttpOptions(base_url=dialects_gateway.url, api_version="v1beta"),
    )
    with pytest.raises(genai.errors.ClientError) as denied:
        client.models.generate_content(model="via-gemini", contents=PROMPT)
    assert denied.value.code == 401
    keyed = genai.Client(
        api_key=dialects_gateway.key,
        http_options=gtypes.HttpOptions(base_url=dialects_gateway.url, api_version="v1beta"),
    )
    with pytest.raises(genai.errors.ClientError) as unknown:
        keyed.models.generate_content(model="no-such-route", contents=PROMPT)
    assert unknown.value.code == 404
    assert unknown.value.status == "NOT_FOUND", unknown.value
    with pytest.raises(genai.errors.ClientError) as bad:
        keyed.models.generate_content(
            model="via-gemini", contents=[gtypes.Content(role="robot", parts=[gtypes.Part.from_text(text="hi")])]
        )
    assert bad.value.code == 400 and bad.value.status == "INVALID_ARGUMENT", bad.value


# --- The OpenAI Agents SDK, with a fallback across dialects mid-conversation --


def test_agents_sdk_with_a_function_tool_falls_back_mid_conversation(dialects_gateway):
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)  # traces would go to api.openai.com
    calls = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        # Long enough that the conversation no longer fits the first
        # target's context window: the next turn falls back.
        return WEATHER + " " + "Details follow. " * 600

    # Which model answered each turn: the gateway says so in a header.
    answered = []

    async def record(response):
        answered.append(response.headers.get("x-staunch-model"))

    client = openai.AsyncOpenAI(
        base_url=f"{dialects_gateway.url}/v1",
        api_key=dialects_gateway.key,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(timeout=20, event_hooks={"response": [record]}),
    )
    agent = agents.Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model=AGENT_ROUTE, openai_client=client),
    )
    result = agents.Runner.run_sync(agent, "What is the weather in Paris?")

    assert len(calls) == 1
    assert result.final_output.startswith(f"Tool result: {WEATHER}")
    # The tool call came from the Responses provider; the answer to its
    # result, too long for that provider's window, from the Anthropic one,
    # with the tool history translated between the two dialects.
    assert answered == [SMALL_WINDOW_MODEL, FALLBACK_MODEL], answered
