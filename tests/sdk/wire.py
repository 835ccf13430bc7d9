"""What the SDK test files share: the model names, the prompt, the weather
tool in both providers' shapes, and the helpers that find an SDK's optional
methods. One copy, imported by each test file.
"""

import openai
import pytest
from openai.types.chat import ChatCompletionMessageToolCall
from pydantic import BaseModel

try:  # the name of a function tool call since openai 1.99
    from openai.types.chat import ChatCompletionMessageFunctionToolCall as FunctionToolCall
except ImportError:  # older SDKs have only the one type
    FunctionToolCall = ChatCompletionMessageToolCall

# The mock (and the gateway's `*` route) answers any model name; these are
# not ones an SDK may come to flag as deprecated.
MODEL_OPENAI = "mock-gpt"
MODEL_ANTHROPIC = "mock-claude"

# Long enough that the mock streams it in many pieces.
PROMPT = "Tell me, in a few words, why the sky is blue on a clear day."

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": WEATHER_SCHEMA,
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "input_schema": WEATHER_SCHEMA,
    }
]


class GetWeather(BaseModel):
    """The current weather in a city."""

    city: str


def mock_text(prompt):
    """The mock's text answer to a last user message (see staunch-mock's
    docs, "Answers")."""
    return f"mock answer to: {prompt[:48]}"


def stream_method(client):
    """`chat.completions.stream` (openai >= 1.92), or the older beta one."""
    for owner in (client.chat.completions, getattr(getattr(client, "beta", None), "chat", None)):
        if owner is None:
            continue
        completions = getattr(owner, "completions", owner)
        if hasattr(completions, "stream"):
            return completions.stream
    pytest.skip(f"openai {openai.__version__} has no chat.completions.stream")
