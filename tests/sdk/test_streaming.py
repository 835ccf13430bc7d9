"""The official OpenAI and Anthropic SDKs stream complete answers from
staunch-mock, and through the axum_gateway example.

Each streamed answer is read through the SDK's own stream handling (its
server-sent-event parser, and its helpers that assemble text and tool calls)
and compared with the answer the same request gets without streaming.
Nothing is stubbed: real HTTP on loopback only.
"""

import json

import anthropic
import openai
import pytest
from anthropic.types import TextBlock, ToolUseBlock

from wire import (
    MODEL_OPENAI,
    MODEL_ANTHROPIC,
    PROMPT,
    ANTHROPIC_TOOLS,
    GetWeather,
    mock_text,
    stream_method,
)


@pytest.fixture
def oai(mock_url):
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-test", max_retries=0, timeout=10) as client:
        yield client


@pytest.fixture
def ant(mock_url):
    with anthropic.Anthropic(base_url=mock_url, api_key="sk-ant-test", max_retries=0, timeout=10) as client:
        yield client


@pytest.fixture
def gw(gateway_url):
    # The gateway retries and falls back on its own; the SDK must not hide
    # what it does by retrying too.
    with openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="sk-test", max_retries=0, timeout=20) as client:
        yield client


# --- OpenAI Chat Completions from the mock ------------------------------------


def test_openai_stream_text_equals_non_streamed_answer(oai):
    messages = [{"role": "user", "content": PROMPT}]
    whole = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages)

    stream = oai.chat.completions.create(
        model=MODEL_OPENAI,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert isinstance(stream, openai.Stream), type(stream)
    chunks = list(stream)

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1, "the mock streams text in pieces"
    text = "".join(c.choices[0].delta.content for c in content_chunks)
    assert text == whole.choices[0].message.content == mock_text(PROMPT)

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes
    assert whole.choices[0].finish_reason == "stop"

    # include_usage: the last chunk has no choices and the usage; no other
    # chunk has any.
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None, last
    assert all(c.usage is None for c in chunks[:-1])
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_openai_stream_helper_final_completion(oai):
    messages = [{"role": "user", "content": PROMPT}]
    whole = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages)

    open_stream = stream_method(oai)
    deltas = []
    with open_stream(
        model=MODEL_OPENAI, messages=messages, stream_options={"include_usage": True}
    ) as stream:
        for event in stream:
            if event.type == "content.delta":
                deltas.append(event.delta)
        final = stream.get_final_completion()

    message = final.choices[0].message
    assert "".join(deltas) == message.content == whole.choices[0].message.content
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason == "stop"
    assert message.role == "assistant"
    assert not message.tool_calls
    assert final.usage is not None
    assert final.usage.completion_tokens == whole.usage.completion_tokens


def test_openai_stream_helper_assembles_tool_call(oai):
    if not hasattr(openai, "pydantic_function_tool"):
        pytest.skip(f"openai {openai.__version__} has no pydantic_function_tool")
    # A strict function tool, so the helper also parses the arguments.
    tools = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    whole = oai.chat.completions.create(model=MODEL_OPENAI, messages=messages, tools=tools)
    whole_call = whole.choices[0].message.tool_calls[0]

    open_stream = stream_method(oai)
    argument_deltas, done = [], []
    with open_stream(model=MODEL_OPENAI, messages=messages, tools=tools) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                argument_deltas.append(event.arguments_delta)
            elif event.type == "tool_calls.function.arguments.done":
                done.append(event)
        final = stream.get_final_completion()

    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1, choice.message
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id and call.id.startswith("call_mock_"), call.id
    assert call.function.name == "get_weather"
    assert len(argument_deltas) > 1, "the mock streams the arguments in pieces"
    assert "".join(argument_deltas) == call.function.arguments
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments.get("city"), str), arguments
    assert arguments == json.loads(whole_call.function.arguments)
    assert isinstance(call.function.parsed_arguments, GetWeather), call.function
    assert call.function.parsed_arguments.city == arguments["city"]
    assert len(done) == 1 and done[0].name == "get_weather"
    assert isinstance(done[0].parsed_arguments, GetWeather)


# --- Anthropic Messages from the mock ----------------------------------------


def test_anthropic_stream_text_equals_non_streamed_answer(ant):
    messages = [{"role": "user", "content": PROMPT}]
    whole = ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=256, messages=messages)

    with ant.messages.stream(model=MODEL_ANTHROPIC, max_tokens=256, messages=messages) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1, "the mock streams text in pieces"
    text = "".join(pieces)
    whole_text = "".join(block.text for block in whole.content if isinstance(block, TextBlock))
    assert text == whole_text == mock_text(PROMPT)
    assert [block.type for block in final.content] == ["text"], final.content
    assert isinstance(final.content[0], TextBlock)
    assert final.content[0].text == text
    assert final.role == "assistant"
    assert final.stop_reason == whole.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_anthropic_stream_assembles_tool_use(ant):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    whole = ant.messages.create(model=MODEL_ANTHROPIC, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages)
    whole_use = next(block for block in whole.content if block.type == "tool_use")

    partials = []
    with ant.messages.stream(
        model=MODEL_ANTHROPIC, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                partials.append(event.partial_json)
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    uses = [block for block in final.content if block.type == "tool_use"]
    assert len(uses) == 1, final.content
    use = uses[0]
    assert isinstance(use, ToolUseBlock), type(use)
    assert use.id and use.id.startswith("toolu_mock_"), use.id
    assert use.name == "get_weather"
    assert isinstance(use.input, dict) and isinstance(use.input.get("city"), str), use.input
    assert len(partials) > 1, "the mock streams the input in pieces"
    assert json.loads("".join(partials)) == use.input
    assert use.input == whole_use.input


# --- OpenAI Chat Completions through the gateway example ---------------------


def test_gateway_stream_complete_text_with_staunch_headers(gw):
    messages = [{"role": "user", "content": PROMPT}]
    with gw.chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        model = response.headers.get("x-staunch-model")
        assert model, dict(response.headers)
        assert response.headers.get("x-staunch-tier"), dict(response.headers)
        assert int(response.headers["x-staunch-attempts"]) >= 1
        chunks = list(response.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock_text(PROMPT), (text, dict(response.headers))
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes
    assert all(c.model == model for c in chunks), {c.model for c in chunks}
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None, last
    assert last.usage.completion_tokens > 0


def test_gateway_stream_helper_final_completion(gw):
    messages = [{"role": "user", "content": "Name three colours of the rainbow, please."}]
    open_stream = stream_method(gw)
    with open_stream(model="gpt-4o", messages=messages) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()

    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == text == mock_text(messages[0]["content"])


def test_gateway_non_streamed_answer_matches_stream(gw):
    # The same answer, not streamed, as JSON with the same headers.
    messages = [{"role": "user", "content": "Why do cats purr when they are content?"}]
    raw = gw.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    assert raw.headers.get("x-staunch-model"), dict(raw.headers)
    completion = raw.parse()
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == mock_text(messages[0]["content"])


def test_gateway_stream_helper_assembles_tool_call(gw):
    if not hasattr(openai, "pydantic_function_tool"):
        pytest.skip(f"openai {openai.__version__} has no pydantic_function_tool")
    tools = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    messages = [{"role": "user", "content": "What is the weather in Lyon?"}]
    open_stream = stream_method(gw)
    with open_stream(model="gpt-4o", messages=messages, tools=tools) as stream:
        final = stream.get_final_completion()

    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1, choice.message
    call = choice.message.tool_calls[0]
    assert call.id
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments).get("city"), str), call.function.arguments
    assert isinstance(call.function.parsed_arguments, GetWeather), call.function
