// Function calling through /v1 with the official openai Node SDK: the model asks for `add`, this
// script runs it and sends the result back; once streamed (tool-call pieces joined by index), once
// whole with a named `tool_choice`. Prints one JSON line of what happened (tests/test_v1_node_clients.py).
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: (process.env.CHAT_URL ?? "http://127.0.0.1:8000") + "/v1",
  apiKey: process.env.CHAT_TOKEN,
  maxRetries: 0, // a refused request fails the test at once, with the site's error
  timeout: 60_000,
});
const model = "deepseek-v4-flash";
const tools = [
  {
    type: "function",
    function: {
      name: "add",
      description: "Add two whole numbers.",
      parameters: {
        type: "object",
        properties: { a: { type: "integer" }, b: { type: "integer" } },
        required: ["a", "b"],
      },
    },
  },
];
const ran = [];
const local = {
  add: ({ a, b }) => {
    ran.push([a, b]);
    return a + b;
  },
};

/** Join a stream's pieces as OpenAI clients do: text, reasoning, finish reason, tool calls by index. */
async function joined(stream) {
  const calls = [];
  let content = "";
  let reasoning = "";
  let finish = null;
  for await (const chunk of stream) {
    const choice = chunk.choices?.[0];
    if (!choice) continue;
    content += choice.delta?.content ?? "";
    reasoning += choice.delta?.reasoning_content ?? "";
    for (const piece of choice.delta?.tool_calls ?? []) {
      const call = (calls[piece.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } });
      if (piece.id) call.id = piece.id;
      call.function.name += piece.function?.name ?? "";
      call.function.arguments += piece.function?.arguments ?? "";
    }
    finish = choice.finish_reason ?? finish;
  }
  return { calls, content, reasoning, finish };
}

/** Run each call locally: the tool messages to send back, and what was called. */
function runCalls(calls) {
  const results = [];
  const called = [];
  for (const call of calls) {
    const args = JSON.parse(call.function.arguments);
    called.push({ id: call.id, name: call.function.name, args });
    results.push({ role: "tool", tool_call_id: call.id, content: String(local[call.function.name](args)) });
  }
  return { results, called };
}

async function streamed() {
  const messages = [{ role: "user", content: "What is 2 + 3? [[fake tool=add]]" }];
  const first = await joined(
    await client.chat.completions.create({ model, messages, tools, stream: true }),
  );
  const { results, called } = runCalls(first.calls);
  // Sent back as most Node programs do: without `reasoning_content` (the site restores it).
  messages.push({ role: "assistant", content: first.content || null, tool_calls: first.calls }, ...results);
  const second = await joined(
    await client.chat.completions.create({ model, messages, tools, stream: true }),
  );
  return {
    calls: called,
    results: results.map((r) => r.content),
    first_finish: first.finish,
    first_content: first.content,
    reasoning: first.reasoning.length > 0,
    text: second.content,
    finish: second.finish,
  };
}

async function whole() {
  const messages = [{ role: "user", content: "What is 2 + 3? Use the add tool." }];
  const first = await client.chat.completions.create({
    model,
    messages,
    tools,
    tool_choice: { type: "function", function: { name: "add" } },
    parallel_tool_calls: false,
  });
  const asked = first.choices[0].message;
  const { results, called } = runCalls(asked.tool_calls ?? []);
  messages.push(asked, ...results); // the SDK's message object, sent back as it came
  const second = await client.chat.completions.create({ model, messages, tools });
  return {
    calls: called,
    results: results.map((r) => r.content),
    first_finish: first.choices[0].finish_reason,
    first_content: asked.content,
    reasoning: Boolean(asked.reasoning_content),
    text: second.choices[0].message.content,
    finish: second.choices[0].finish_reason,
  };
}

console.log(JSON.stringify({ streamed: await streamed(), whole: await whole(), ran }));
