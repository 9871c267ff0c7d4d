"""Function calling through /v1: the model asks for a tool, your program runs it and sends the result back."""

import json
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("CHAT_URL", "http://127.0.0.1:8000") + "/v1",
    api_key=os.environ["CHAT_TOKEN"],
)
tools = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two whole numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]
messages = [{"role": "user", "content": "What is 2 + 3? Use the add tool."}]
first = client.chat.completions.create(
    model="deepseek-v4-flash",
    messages=messages,
    tools=tools,
    tool_choice={"type": "function", "function": {"name": "add"}},
)
asked = first.choices[0].message
messages.append(asked.model_dump(exclude_none=True))  # the site restores its reasoning if this drops it
for call in asked.tool_calls or []:
    arguments = json.loads(call.function.arguments)
    print(f"{call.function.name}({arguments})")
    messages.append({"role": "tool", "tool_call_id": call.id, "content": str(arguments["a"] + arguments["b"])})
final = client.chat.completions.create(model="deepseek-v4-flash", messages=messages, tools=tools)
print(final.choices[0].message.content)
