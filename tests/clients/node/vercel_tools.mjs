// Function calling through /v1 with the Vercel AI SDK and its OpenAI-compatible provider: `generateText`
// and `streamText` run the `add` tool and go on to the answer (`stopWhen: stepCountIs(3)`). Prints one
// JSON line of what happened (tests/test_v1_node_clients.py).
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const deepseek = createOpenAICompatible({
  name: "deepseek",
  baseURL: (process.env.CHAT_URL ?? "http://127.0.0.1:8000") + "/v1",
  apiKey: process.env.CHAT_TOKEN,
});
const ran = [];
const add = tool({
  description: "Add two whole numbers.",
  inputSchema: z.object({ a: z.number().int(), b: z.number().int() }),
  execute: async ({ a, b }) => {
    ran.push([a, b]);
    return a + b;
  },
});
const settings = {
  model: deepseek("deepseek-v4-flash"),
  tools: { add },
  stopWhen: stepCountIs(3),
  maxRetries: 0, // a refused request fails the test at once, with the site's error
  prompt: "What is 2 + 3? [[fake tool=add]]",
};

/** What each step did: its tool calls and results, text and finish reason. */
function summary(steps, text, finishReason) {
  return {
    steps: steps.map((step) => ({
      calls: step.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, args: c.input })),
      results: step.toolResults.map((r) => ({ id: r.toolCallId, name: r.toolName, output: r.output })),
      text: step.text,
      finish: step.finishReason,
      reasoning: step.reasoningText ?? null,
    })),
    text,
    finish: finishReason,
  };
}

const generated = await generateText(settings);

const errors = [];
const parts = new Set();
const streaming = streamText({ ...settings, onError: ({ error }) => errors.push(String(error?.message ?? error)) });
for await (const part of streaming.fullStream) {
  parts.add(part.type);
  if (part.type === "error") errors.push(String(part.error?.message ?? part.error));
}
if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(1);
}

console.log(
  JSON.stringify({
    generate: summary(generated.steps, generated.text, generated.finishReason),
    stream: {
      ...summary(await streaming.steps, await streaming.text, await streaming.finishReason),
      parts: [...parts].sort(),
    },
    ran,
  }),
);
