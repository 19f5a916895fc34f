"""Templates that render tools themselves (Hugging Face conventions, here a Qwen 2.5
style template) get the tools and the tool turns natively, not chatd's generic prompt."""

from __future__ import annotations

from chatd.engine.template import ChatTemplate
from chatd.protocol.chat_request import validate_chat_request
from chatd.service.chat.prompt import render_messages
from chatd.service.chat.tools import plan_tools
from chatd.service.tool_calls import template_tools

QWEN_LIKE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant' }}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content"
    " + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

REQUEST = {
    "model": "m",
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
}


def test_native_template_renders_tools_and_tool_turns() -> None:
    template = ChatTemplate(QWEN_LIKE)
    assert template.supports_tools
    req = validate_chat_request(REQUEST)
    plan = plan_tools(req)
    assert plan is not None
    messages = render_messages(req, plan, native=True)
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert messages[2] == {"role": "tool", "content": "18 degrees", "tool_call_id": "call_1"}
    text = template.render(messages, tools=template_tools(plan))
    assert '"name": "get_weather"' in text.split("</tools>")[0]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    assert "<tool_response>\n18 degrees\n</tool_response>" in text
    assert "# Tools\n<tools>" in text and "You may call" not in text  # no generic prompt


def test_template_without_tools_gets_the_generic_prompt() -> None:
    template = ChatTemplate(None)
    assert not template.supports_tools
    req = validate_chat_request(REQUEST)
    messages = render_messages(req, plan_tools(req), native=False)
    assert messages[0]["role"] == "system" and "<tools>" in messages[0]["content"]
    assert messages[3]["content"].startswith("<tool_response>")
