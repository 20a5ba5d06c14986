import { Type, type Static } from '@sinclair/typebox';
import { ChatTextPart, Closed, FreeFormObject, Nullable, StringMap, TokenCount } from './common.js';

/**
 * `POST /v1/chat/completions`, modelled on OpenAI Chat Completions as the official `openai` v6
 * SDK sends it. Left out on purpose (refused as unknown): the legacy `functions` /
 * `function_call` parameters, custom (grammar) tools, `web_search_options`.
 *
 * Discriminators (`role`, `type`) come first in every object so the compiled check rejects a
 * wrong union branch on its first comparison.
 */

const TextContent = Type.Union([Type.String(), Type.Array(ChatTextPart)]);

const ImageUrlPart = Closed({
  type: Type.Literal('image_url'),
  image_url: Closed({
    url: Type.String(),
    detail: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('low'), Type.Literal('high')])),
  }),
});

const InputAudioPart = Closed({
  type: Type.Literal('input_audio'),
  input_audio: Closed({
    data: Type.String(),
    format: Type.Union([Type.Literal('wav'), Type.Literal('mp3')]),
  }),
});

const FilePart = Closed({
  type: Type.Literal('file'),
  file: Closed({
    file_data: Type.Optional(Type.String()),
    file_id: Type.Optional(Type.String()),
    filename: Type.Optional(Type.String()),
  }),
});

const RefusalPart = Closed({
  type: Type.Literal('refusal'),
  refusal: Type.String(),
});

const SystemMessage = Closed({
  role: Type.Literal('system'),
  content: TextContent,
  name: Type.Optional(Type.String()),
});

const DeveloperMessage = Closed({
  role: Type.Literal('developer'),
  content: TextContent,
  name: Type.Optional(Type.String()),
});

const UserMessage = Closed({
  role: Type.Literal('user'),
  content: Type.Union([
    Type.String(),
    Type.Array(Type.Union([ChatTextPart, ImageUrlPart, InputAudioPart, FilePart])),
  ]),
  name: Type.Optional(Type.String()),
});

const ToolCall = Closed({
  type: Type.Literal('function'),
  id: Type.String(),
  function: Closed({
    name: Type.String(),
    arguments: Type.String(),
  }),
});

const AssistantMessage = Closed({
  role: Type.Literal('assistant'),
  content: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.Union([ChatTextPart, RefusalPart]))]))),
  name: Type.Optional(Type.String()),
  refusal: Type.Optional(Nullable(Type.String())),
  tool_calls: Type.Optional(Type.Array(ToolCall)),
  audio: Type.Optional(Nullable(Closed({ id: Type.String() }))),
});

const ToolMessage = Closed({
  role: Type.Literal('tool'),
  tool_call_id: Type.String(),
  content: TextContent,
});

/** Legacy function-result message. */
const FunctionMessage = Closed({
  role: Type.Literal('function'),
  name: Type.String(),
  content: Nullable(Type.String()),
});

export const ChatMessage = Type.Union([
  SystemMessage,
  DeveloperMessage,
  UserMessage,
  AssistantMessage,
  ToolMessage,
  FunctionMessage,
]);

const FunctionTool = Closed({
  type: Type.Literal('function'),
  function: Closed({
    name: Type.String(),
    description: Type.Optional(Type.String()),
    parameters: Type.Optional(FreeFormObject()),
    strict: Type.Optional(Nullable(Type.Boolean())),
  }),
});

const NamedToolChoice = Closed({
  type: Type.Literal('function'),
  function: Closed({ name: Type.String() }),
});

const AllowedToolsChoice = Closed({
  type: Type.Literal('allowed_tools'),
  allowed_tools: Closed({
    mode: Type.Union([Type.Literal('auto'), Type.Literal('required')]),
    tools: Type.Array(NamedToolChoice),
  }),
});

const ResponseFormat = Type.Union([
  Closed({ type: Type.Literal('text') }),
  Closed({ type: Type.Literal('json_object') }),
  Closed({
    type: Type.Literal('json_schema'),
    json_schema: Closed({
      name: Type.String(),
      description: Type.Optional(Type.String()),
      schema: Type.Optional(FreeFormObject()),
      strict: Type.Optional(Nullable(Type.Boolean())),
    }),
  }),
]);

const NullableNumber = Nullable(Type.Number());

export const ChatBody = Closed({
  model: Type.String({ minLength: 1 }),
  messages: Type.Array(ChatMessage, { minItems: 1 }),

  temperature: Type.Optional(NullableNumber),
  top_p: Type.Optional(NullableNumber),
  n: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
  stream: Type.Optional(Nullable(Type.Boolean())),
  stream_options: Type.Optional(
    Nullable(
      Closed({
        include_usage: Type.Optional(Type.Boolean()),
        include_obfuscation: Type.Optional(Type.Boolean()),
      }),
    ),
  ),
  stop: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String())]))),
  max_tokens: Type.Optional(Nullable(TokenCount)),
  max_completion_tokens: Type.Optional(Nullable(TokenCount)),
  presence_penalty: Type.Optional(NullableNumber),
  frequency_penalty: Type.Optional(NullableNumber),
  logit_bias: Type.Optional(Nullable(Type.Record(Type.String(), Type.Number()))),
  logprobs: Type.Optional(Nullable(Type.Boolean())),
  top_logprobs: Type.Optional(Nullable(Type.Integer({ minimum: 0 }))),
  user: Type.Optional(Type.String()),
  seed: Type.Optional(Nullable(Type.Integer())),
  tools: Type.Optional(Type.Array(FunctionTool)),
  tool_choice: Type.Optional(
    Type.Union([
      Type.Literal('none'),
      Type.Literal('auto'),
      Type.Literal('required'),
      NamedToolChoice,
      AllowedToolsChoice,
    ]),
  ),
  parallel_tool_calls: Type.Optional(Type.Boolean()),
  response_format: Type.Optional(ResponseFormat),
  reasoning_effort: Type.Optional(Nullable(Type.String())),
  metadata: Type.Optional(Nullable(StringMap)),
  store: Type.Optional(Nullable(Type.Boolean())),
  service_tier: Type.Optional(Nullable(Type.String())),
  modalities: Type.Optional(Nullable(Type.Array(Type.Union([Type.Literal('text'), Type.Literal('audio')])))),
  prediction: Type.Optional(
    Nullable(
      Closed({
        type: Type.Literal('content'),
        content: TextContent,
      }),
    ),
  ),
  audio: Type.Optional(
    Nullable(
      Closed({
        format: Type.String(),
        voice: Type.Union([Type.String(), Closed({ id: Type.String() })]),
      }),
    ),
  ),
  verbosity: Type.Optional(Nullable(Type.String())),
  safety_identifier: Type.Optional(Type.String()),
  prompt_cache_key: Type.Optional(Type.String()),
  prompt_cache_retention: Type.Optional(Nullable(Type.String())),
});

export type ChatBody = Static<typeof ChatBody>;
