import { Type, type Static } from '@sinclair/typebox';
import { Closed, FreeFormObject, Nullable, TokenCount } from './common.js';

/**
 * `POST /v1/messages`, modelled on Anthropic Messages as `@anthropic-ai/sdk` sends it.
 *
 * Left out on purpose (refused as unknown): server tools (web search, web fetch, code
 * execution, bash, text editor, memory, computer use) and their result blocks, `mcp_servers`,
 * `container`, search-result blocks, top-level `cache_control`, `workspace_id`.
 * Only client (custom) tools are accepted.
 */

const CacheControl = Nullable(
  Closed({
    type: Type.Literal('ephemeral'),
    ttl: Type.Optional(Type.Union([Type.Literal('5m'), Type.Literal('1h')])),
  }),
);

const DocumentCitationFields = {
  cited_text: Type.String(),
  document_index: Type.Integer({ minimum: 0 }),
  document_title: Nullable(Type.String()),
};

const TextCitation = Type.Union([
  Closed({
    type: Type.Literal('char_location'),
    ...DocumentCitationFields,
    start_char_index: Type.Integer({ minimum: 0 }),
    end_char_index: Type.Integer({ minimum: 0 }),
  }),
  Closed({
    type: Type.Literal('page_location'),
    ...DocumentCitationFields,
    start_page_number: Type.Integer({ minimum: 0 }),
    end_page_number: Type.Integer({ minimum: 0 }),
  }),
  Closed({
    type: Type.Literal('content_block_location'),
    ...DocumentCitationFields,
    start_block_index: Type.Integer({ minimum: 0 }),
    end_block_index: Type.Integer({ minimum: 0 }),
  }),
]);

const TextBlock = Closed({
  type: Type.Literal('text'),
  text: Type.String(),
  cache_control: Type.Optional(CacheControl),
  citations: Type.Optional(Nullable(Type.Array(TextCitation))),
});

const FileSource = Closed({
  type: Type.Literal('file'),
  file_id: Type.String(),
});

const UrlSource = Closed({
  type: Type.Literal('url'),
  url: Type.String(),
});

const ImageBlock = Closed({
  type: Type.Literal('image'),
  source: Type.Union([
    Closed({
      type: Type.Literal('base64'),
      media_type: Type.Union([
        Type.Literal('image/jpeg'),
        Type.Literal('image/png'),
        Type.Literal('image/gif'),
        Type.Literal('image/webp'),
      ]),
      data: Type.String(),
    }),
    UrlSource,
    FileSource,
  ]),
  cache_control: Type.Optional(CacheControl),
});

const DocumentBlock = Closed({
  type: Type.Literal('document'),
  source: Type.Union([
    Closed({
      type: Type.Literal('base64'),
      media_type: Type.Literal('application/pdf'),
      data: Type.String(),
    }),
    Closed({
      type: Type.Literal('text'),
      media_type: Type.Literal('text/plain'),
      data: Type.String(),
    }),
    Closed({
      type: Type.Literal('content'),
      content: Type.Union([Type.String(), Type.Array(Type.Union([TextBlock, ImageBlock]))]),
    }),
    UrlSource,
    FileSource,
  ]),
  title: Type.Optional(Nullable(Type.String())),
  context: Type.Optional(Nullable(Type.String())),
  citations: Type.Optional(Nullable(Closed({ enabled: Type.Optional(Type.Boolean()) }))),
  cache_control: Type.Optional(CacheControl),
});

const ToolUseBlock = Closed({
  type: Type.Literal('tool_use'),
  id: Type.String(),
  name: Type.String(),
  input: FreeFormObject(),
  cache_control: Type.Optional(CacheControl),
});

const ToolResultBlock = Closed({
  type: Type.Literal('tool_result'),
  tool_use_id: Type.String(),
  content: Type.Optional(Type.Union([Type.String(), Type.Array(Type.Union([TextBlock, ImageBlock, DocumentBlock]))])),
  is_error: Type.Optional(Type.Boolean()),
  cache_control: Type.Optional(CacheControl),
});

const ThinkingBlock = Closed({
  type: Type.Literal('thinking'),
  thinking: Type.String(),
  signature: Type.String(),
});

const RedactedThinkingBlock = Closed({
  type: Type.Literal('redacted_thinking'),
  data: Type.String(),
});

export const AnthropicContentBlock = Type.Union([
  TextBlock,
  ImageBlock,
  DocumentBlock,
  ToolUseBlock,
  ToolResultBlock,
  ThinkingBlock,
  RedactedThinkingBlock,
]);

export const AnthropicMessage = Closed({
  role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]),
  content: Type.Union([Type.String(), Type.Array(AnthropicContentBlock)]),
});

const Tool = Closed({
  name: Type.String(),
  description: Type.Optional(Type.String()),
  input_schema: FreeFormObject(),
  type: Type.Optional(Nullable(Type.Literal('custom'))),
  strict: Type.Optional(Type.Boolean()),
  cache_control: Type.Optional(CacheControl),
});

const ToolChoice = Type.Union([
  Closed({ type: Type.Literal('auto'), disable_parallel_tool_use: Type.Optional(Type.Boolean()) }),
  Closed({ type: Type.Literal('any'), disable_parallel_tool_use: Type.Optional(Type.Boolean()) }),
  Closed({ type: Type.Literal('tool'), name: Type.String(), disable_parallel_tool_use: Type.Optional(Type.Boolean()) }),
  Closed({ type: Type.Literal('none') }),
]);

const ThinkingDisplay = Type.Optional(Nullable(Type.Union([Type.Literal('summarized'), Type.Literal('omitted')])));

const Thinking = Type.Union([
  Closed({ type: Type.Literal('enabled'), budget_tokens: Type.Integer({ minimum: 1 }), display: ThinkingDisplay }),
  Closed({ type: Type.Literal('disabled') }),
  Closed({ type: Type.Literal('adaptive'), display: ThinkingDisplay }),
]);

export const MessagesBody = Closed({
  model: Type.String({ minLength: 1 }),
  messages: Type.Array(AnthropicMessage, { minItems: 1 }),
  max_tokens: TokenCount,

  system: Type.Optional(Type.Union([Type.String(), Type.Array(TextBlock)])),
  temperature: Type.Optional(Type.Number()),
  top_p: Type.Optional(Type.Number()),
  top_k: Type.Optional(Type.Integer({ minimum: 0 })),
  stop_sequences: Type.Optional(Type.Array(Type.String())),
  stream: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Closed({ user_id: Type.Optional(Nullable(Type.String())) })),
  tools: Type.Optional(Type.Array(Tool)),
  tool_choice: Type.Optional(ToolChoice),
  thinking: Type.Optional(Thinking),
  service_tier: Type.Optional(Type.String()),
  output_config: Type.Optional(
    Closed({
      effort: Type.Optional(Nullable(Type.String())),
      format: Type.Optional(Nullable(Closed({ type: Type.Literal('json_schema'), schema: FreeFormObject() }))),
    }),
  ),
});

export type MessagesBody = Static<typeof MessagesBody>;
