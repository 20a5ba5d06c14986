import { Type, type Static } from '@sinclair/typebox';
import { Closed, FreeFormObject, Nullable, StringMap, TokenCount } from './common.js';

/**
 * `POST /v1/responses`, modelled on OpenAI Responses as the official `openai` v6 SDK sends it.
 *
 * Left out on purpose (refused as unknown): `background`, `conversation`, `prompt`,
 * `context_management`, the MCP tool (with its `server_url`), shell and custom tools, the input
 * items that replay built-in tool calls, and `item_reference`. Function tools and the built-in
 * tools web search, file search, code interpreter, image generation and computer use are
 * accepted by the schema; the tenant policy decides which may be used (src/policy/capabilities.ts).
 */

const InputText = Closed({
  type: Type.Literal('input_text'),
  text: Type.String(),
});

const ImageDetail = Type.Union([Type.Literal('low'), Type.Literal('high'), Type.Literal('auto'), Type.Literal('original')]);

const InputImage = Closed({
  type: Type.Literal('input_image'),
  image_url: Type.Optional(Nullable(Type.String())),
  file_id: Type.Optional(Nullable(Type.String())),
  detail: Type.Optional(Nullable(ImageDetail)),
});

const InputFile = Closed({
  type: Type.Literal('input_file'),
  file_data: Type.Optional(Nullable(Type.String())),
  file_id: Type.Optional(Nullable(Type.String())),
  filename: Type.Optional(Nullable(Type.String())),
  file_url: Type.Optional(Nullable(Type.String())),
});

const InputContent = Type.Array(Type.Union([InputText, InputImage, InputFile]));

const ItemStatus = Type.Union([Type.Literal('in_progress'), Type.Literal('completed'), Type.Literal('incomplete')]);

/** A user, system or developer turn (`EasyInputMessage` / `ResponseInputItem.Message`). */
const InputMessage = Closed({
  role: Type.Union([Type.Literal('user'), Type.Literal('system'), Type.Literal('developer')]),
  type: Type.Optional(Type.Literal('message')),
  content: Type.Union([Type.String(), InputContent]),
  status: Type.Optional(ItemStatus),
});

const Annotation = Type.Union([
  Closed({
    type: Type.Literal('file_citation'),
    file_id: Type.String(),
    filename: Type.String(),
    index: Type.Number(),
  }),
  Closed({
    type: Type.Literal('url_citation'),
    url: Type.String(),
    title: Type.String(),
    start_index: Type.Number(),
    end_index: Type.Number(),
  }),
  Closed({
    type: Type.Literal('container_file_citation'),
    container_id: Type.String(),
    file_id: Type.String(),
    filename: Type.String(),
    start_index: Type.Number(),
    end_index: Type.Number(),
  }),
  Closed({
    type: Type.Literal('file_path'),
    file_id: Type.String(),
    index: Type.Number(),
  }),
]);

const TopLogprob = Closed({
  token: Type.String(),
  bytes: Type.Array(Type.Number()),
  logprob: Type.Number(),
});

const OutputText = Closed({
  type: Type.Literal('output_text'),
  text: Type.String(),
  annotations: Type.Optional(Type.Array(Annotation)),
  logprobs: Type.Optional(
    Type.Array(
      Closed({
        token: Type.String(),
        bytes: Type.Array(Type.Number()),
        logprob: Type.Number(),
        top_logprobs: Type.Array(TopLogprob),
      }),
    ),
  ),
});

const Refusal = Closed({
  type: Type.Literal('refusal'),
  refusal: Type.String(),
});

/** An earlier assistant turn, as written by hand or replayed from `response.output`. */
const AssistantMessage = Closed({
  role: Type.Literal('assistant'),
  type: Type.Optional(Type.Literal('message')),
  content: Type.Union([Type.String(), Type.Array(Type.Union([OutputText, Refusal, InputText]))]),
  id: Type.Optional(Type.String()),
  status: Type.Optional(ItemStatus),
  phase: Type.Optional(Nullable(Type.Union([Type.Literal('commentary'), Type.Literal('final_answer')]))),
});

const FunctionCall = Closed({
  type: Type.Literal('function_call'),
  call_id: Type.String(),
  name: Type.String(),
  arguments: Type.String(),
  id: Type.Optional(Type.String()),
  status: Type.Optional(ItemStatus),
});

const FunctionCallOutput = Closed({
  type: Type.Literal('function_call_output'),
  call_id: Type.String(),
  output: Type.Union([Type.String(), InputContent]),
  id: Type.Optional(Nullable(Type.String())),
  status: Type.Optional(Nullable(ItemStatus)),
});

/** A reasoning item replayed from an earlier answer (stateless multi-turn with reasoning models). */
const Reasoning = Closed({
  type: Type.Literal('reasoning'),
  id: Type.String(),
  summary: Type.Array(Closed({ type: Type.Literal('summary_text'), text: Type.String() })),
  content: Type.Optional(Type.Array(Closed({ type: Type.Literal('reasoning_text'), text: Type.String() }))),
  encrypted_content: Type.Optional(Nullable(Type.String())),
  status: Type.Optional(ItemStatus),
});

export const ResponsesInputItem = Type.Union([
  InputMessage,
  AssistantMessage,
  FunctionCall,
  FunctionCallOutput,
  Reasoning,
]);

const FunctionTool = Closed({
  type: Type.Literal('function'),
  name: Type.String(),
  parameters: Type.Optional(Nullable(FreeFormObject())),
  strict: Type.Optional(Nullable(Type.Boolean())),
  description: Type.Optional(Nullable(Type.String())),
});

const NullableString = Nullable(Type.String());

/** Built-in web search (`web_search`, `web_search_preview`). */
const WebSearchTool = Closed({
  type: Type.Union([Type.Literal('web_search'), Type.Literal('web_search_preview')]),
  search_context_size: Type.Optional(Nullable(Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high')]))),
  user_location: Type.Optional(
    Nullable(
      Closed({
        type: Type.Literal('approximate'),
        city: Type.Optional(NullableString),
        country: Type.Optional(NullableString),
        region: Type.Optional(NullableString),
        timezone: Type.Optional(NullableString),
      }),
    ),
  ),
  filters: Type.Optional(Nullable(Closed({ allowed_domains: Type.Optional(Nullable(Type.Array(Type.String()))) }))),
});

/** Built-in file search over the tenant's vector stores (a comparison filter only). */
const FileSearchTool = Closed({
  type: Type.Literal('file_search'),
  vector_store_ids: Type.Array(Type.String()),
  max_num_results: Type.Optional(Type.Integer({ minimum: 1 })),
  ranking_options: Type.Optional(
    Closed({
      ranker: Type.Optional(Type.String()),
      score_threshold: Type.Optional(Type.Number()),
    }),
  ),
  filters: Type.Optional(
    Nullable(
      Closed({
        type: Type.Union([
          Type.Literal('eq'), Type.Literal('ne'), Type.Literal('gt'),
          Type.Literal('gte'), Type.Literal('lt'), Type.Literal('lte'),
        ]),
        key: Type.String(),
        value: Type.Union([Type.String(), Type.Number(), Type.Boolean()]),
      }),
    ),
  ),
});

/** Built-in code interpreter, in a container by id or an automatic one. */
const CodeInterpreterTool = Closed({
  type: Type.Literal('code_interpreter'),
  container: Type.Union([
    Type.String(),
    Closed({
      type: Type.Literal('auto'),
      file_ids: Type.Optional(Type.Array(Type.String())),
      memory_limit: Type.Optional(NullableString),
    }),
  ]),
});

/** Built-in image generation. */
const ImageGenerationTool = Closed({
  type: Type.Literal('image_generation'),
  background: Type.Optional(Type.String()),
  input_fidelity: Type.Optional(NullableString),
  input_image_mask: Type.Optional(
    Closed({ image_url: Type.Optional(Type.String()), file_id: Type.Optional(Type.String()) }),
  ),
  model: Type.Optional(Type.String()),
  moderation: Type.Optional(Type.String()),
  output_compression: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  output_format: Type.Optional(Type.String()),
  partial_images: Type.Optional(Type.Integer({ minimum: 0 })),
  quality: Type.Optional(Type.String()),
  size: Type.Optional(Type.String()),
});

/** Built-in computer use (preview). */
const ComputerUseTool = Closed({
  type: Type.Literal('computer_use_preview'),
  display_height: Type.Integer({ minimum: 1 }),
  display_width: Type.Integer({ minimum: 1 }),
  environment: Type.String(),
});

/** A `tool_choice` forcing one built-in tool. */
const HostedToolChoice = Closed({
  type: Type.Union([
    Type.Literal('web_search'),
    Type.Literal('web_search_preview'),
    Type.Literal('file_search'),
    Type.Literal('code_interpreter'),
    Type.Literal('image_generation'),
    Type.Literal('computer_use_preview'),
  ]),
});

const NamedFunction = Closed({
  type: Type.Literal('function'),
  name: Type.String(),
});

const TextFormat = Type.Union([
  Closed({ type: Type.Literal('text') }),
  Closed({ type: Type.Literal('json_object') }),
  Closed({
    type: Type.Literal('json_schema'),
    name: Type.String(),
    schema: FreeFormObject(),
    description: Type.Optional(Type.String()),
    strict: Type.Optional(Nullable(Type.Boolean())),
  }),
]);

const NullableNumber = Nullable(Type.Number());

export const ResponsesBody = Closed({
  model: Type.String({ minLength: 1 }),
  input: Type.Union([Type.String(), Type.Array(ResponsesInputItem, { minItems: 1 })]),

  instructions: Type.Optional(Nullable(Type.String())),
  max_output_tokens: Type.Optional(Nullable(TokenCount)),
  temperature: Type.Optional(NullableNumber),
  top_p: Type.Optional(NullableNumber),
  stream: Type.Optional(Nullable(Type.Boolean())),
  stream_options: Type.Optional(Nullable(Closed({ include_obfuscation: Type.Optional(Type.Boolean()) }))),
  tools: Type.Optional(
    Type.Array(Type.Union([FunctionTool, WebSearchTool, FileSearchTool, CodeInterpreterTool, ImageGenerationTool, ComputerUseTool])),
  ),
  tool_choice: Type.Optional(
    Type.Union([
      Type.Literal('none'),
      Type.Literal('auto'),
      Type.Literal('required'),
      NamedFunction,
      HostedToolChoice,
      Closed({
        type: Type.Literal('allowed_tools'),
        mode: Type.Union([Type.Literal('auto'), Type.Literal('required')]),
        tools: Type.Array(NamedFunction),
      }),
    ]),
  ),
  parallel_tool_calls: Type.Optional(Nullable(Type.Boolean())),
  text: Type.Optional(
    Closed({
      format: Type.Optional(TextFormat),
      verbosity: Type.Optional(Nullable(Type.String())),
    }),
  ),
  reasoning: Type.Optional(
    Nullable(
      Closed({
        effort: Type.Optional(Nullable(Type.String())),
        summary: Type.Optional(Nullable(Type.String())),
        generate_summary: Type.Optional(Nullable(Type.String())),
      }),
    ),
  ),
  metadata: Type.Optional(Nullable(StringMap)),
  store: Type.Optional(Nullable(Type.Boolean())),
  previous_response_id: Type.Optional(Nullable(Type.String())),
  truncation: Type.Optional(Nullable(Type.String())),
  user: Type.Optional(Type.String()),
  include: Type.Optional(Nullable(Type.Array(Type.String()))),
  service_tier: Type.Optional(Nullable(Type.String())),
  top_logprobs: Type.Optional(Nullable(Type.Integer({ minimum: 0 }))),
  safety_identifier: Type.Optional(Type.String()),
  prompt_cache_key: Type.Optional(Type.String()),
  prompt_cache_retention: Type.Optional(Nullable(Type.String())),
});

export type ResponsesBody = Static<typeof ResponsesBody>;

/** Input parts of a message or a function-call output: text, image, file. */
export type ResponsesInputContent = Static<typeof InputContent>;
