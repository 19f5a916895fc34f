// The Vercel AI SDK (npm `ai` + `@ai-sdk/openai`) against chatd, run by
// tests/e2e/test_ai_sdk.py: `streamText` on `createOpenAI({ baseURL, apiKey })(model)`,
// which is the Responses API (`/v1/responses`), the provider's default.
//
//   node ai_sdk_stream.mjs text   a streamed text answer
//   node ai_sdk_stream.mjs tool   a forced tool call (toolChoice: {type: "tool"}), run by
//                                 the SDK (its execute); then a second step sends its
//                                 output back (function_call_output) and streams the
//                                 answer (toolChoice "none" there: forced again, the model
//                                 would call again)
//
// Environment: AI_SDK_PREFIX (the npm prefix both packages are installed in: an ESM
// import resolves bare names from the script's folder, so they are resolved from there),
// CHATD_BASE_URL (".../v1"), CHATD_API_KEY, CHATD_MODEL. Prints one JSON line per stream
// part (its type and the fields the test reads), then {"type": "result", ...}.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const prefix = process.env.AI_SDK_PREFIX;
const require = createRequire(`${prefix}/`);
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { jsonSchema, stepCountIs, streamText, tool } = await load("ai");
const { createOpenAI } = await load("@ai-sdk/openai");

const provider = createOpenAI({
  baseURL: process.env.CHATD_BASE_URL,
  apiKey: process.env.CHATD_API_KEY,
});
const model = provider(process.env.CHATD_MODEL);
const mode = process.argv[2];
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const calls = [];
const options =
  mode === "tool"
    ? {
        prompt: "What is the weather in Paris?",
        tools: {
          get_weather: tool({
            description: "The current weather in a city.",
            inputSchema: jsonSchema({
              type: "object",
              properties: { city: { type: "string" } },
              required: ["city"],
              additionalProperties: false,
            }),
            execute: async ({ city }) => {
              calls.push(city);
              return `It is sunny and 21 degrees in ${city}.`;
            },
          }),
        },
        toolChoice: { type: "tool", toolName: "get_weather" },
        stopWhen: stepCountIs(2),
        prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: "none" } : {}),
        maxOutputTokens: 48,
        temperature: 0,
      }
    : {
        prompt: "Say hello in one short sentence.",
        maxOutputTokens: 24,
      };

const result = streamText({ model, maxRetries: 0, ...options });
for await (const part of result.fullStream) {
  const seen = { type: part.type };
  if (part.type === "text-delta") seen.text = part.text;
  if (part.type === "tool-call") Object.assign(seen, { toolName: part.toolName, input: part.input });
  if (part.type === "tool-result") Object.assign(seen, { toolName: part.toolName, output: part.output });
  if (part.type === "error") seen.error = String(part.error?.message ?? part.error);
  if (part.type === "finish-step") seen.finishReason = part.finishReason;
  if (part.type === "finish") Object.assign(seen, { finishReason: part.finishReason, usage: part.totalUsage });
  emit(seen);
}
const response = await result.response;
emit({
  type: "result",
  text: await result.text,
  finishReason: await result.finishReason,
  usage: await result.usage,
  responseId: response.id,
  modelId: response.modelId,
  steps: (await result.steps).length,
  calls,
});
