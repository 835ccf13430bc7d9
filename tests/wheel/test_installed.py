"""The binary `pip install staunch-gateway` installs, started with no
configuration, answers the official OpenAI and Anthropic SDKs: plain calls,
streams, and a tool call followed by its result. Nothing is stubbed: real
HTTP on loopback, parsed by the SDKs' own types.
"""

import json
import subprocess
from importlib.metadata import version

import anthropic
import openai
import pytest

from conftest import installed_gateway

PROMPT = "Name three colours of a rainbow, in a few words please."
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.fixture
def oai(gateway_url):
    # No client keys on loopback: any key does, but the SDK wants one.
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=20) as client:
        yield client


@pytest.fixture
def ant(gateway_url):
    with anthropic.Anthropic(base_url=gateway_url, api_key="unused", max_retries=0, timeout=20) as client:
        yield client


def test_the_installed_binary_is_the_packages_version():
    binary = installed_gateway()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    # "staunch-gateway 0.1.0 (1a2b3c4d5e6f 2025-01-31)", or "(unknown)"
    # when built outside a git checkout.
    assert out.startswith(f"staunch-gateway {version('staunch-gateway')} ("), out
    assert out.rstrip().endswith(")"), out
    help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    assert "Usage: staunch-gateway" in help_text, help_text


# --- OpenAI Chat Completions -------------------------------------------------


def test_openai_plain(oai):
    completion = oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PROMPT}])
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content.startswith("mock answer to: "), choice.message.content
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


def test_openai_streamed(oai):
    stream = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1, "streamed in pieces"
    assert "".join(pieces).startswith("mock answer to: ")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_tool_call_and_result(oai):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    messages = [{"role": "user", "content": "What is the weather in Lisbon?"}]
    first = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and windy"},
    ]
    second = oai.chat.completions.create(model="gpt-4o", messages=messages, tools=tools)
    assert second.choices[0].finish_reason == "stop"
    assert "18 C and windy" in second.choices[0].message.content


def test_openai_tool_call_streamed(oai):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "What is the weather in Lisbon?"}],
            tools=tools,
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == "get_weather", deltas
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert isinstance(json.loads(arguments)["city"], str), arguments
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"], finishes


# --- Anthropic Messages ------------------------------------------------------


def test_anthropic_plain(ant):
    message = ant.messages.create(
        model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    )
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("mock answer to: "), message.content
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_anthropic_streamed(ant):
    with ant.messages.stream(
        model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1, "streamed in pieces"
    assert "".join(pieces) == final.content[0].text
    assert final.stop_reason == "end_turn"


def test_anthropic_tool_use_and_result(ant):
    tools = [{"name": "get_weather", "description": "The weather in a city.", "input_schema": WEATHER}]
    messages = [{"role": "user", "content": "What is the weather in Lisbon?"}]
    first = ant.messages.create(model="claude-sonnet-4-5", max_tokens=256, tools=tools, messages=messages)
    assert first.stop_reason == "tool_use", first
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input["city"], str), use

    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C and windy"}]},
    ]
    second = ant.messages.create(model="claude-sonnet-4-5", max_tokens=256, tools=tools, messages=messages)
    assert second.stop_reason == "end_turn"
    assert "18 C and windy" in "".join(block.text for block in second.content if block.type == "text")


def test_anthropic_tool_use_streamed(ant):
    tools = [{"name": "get_weather", "description": "The weather in a city.", "input_schema": WEATHER}]
    with ant.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=256,
        tools=tools,
        messages=[{"role": "user", "content": "What is the weather in Lisbon?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(block for block in final.content if block.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input["city"], str), use
