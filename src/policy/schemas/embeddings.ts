import { Type, type Static } from '@sinclair/typebox';
import { Closed } from './common.js';

/** `POST /v1/embeddings`, modelled on OpenAI Embeddings: text, texts, tokens or token arrays. */
export const EmbeddingsBody = Closed({
  model: Type.String({ minLength: 1 }),
  input: Type.Union([
    Type.String(),
    Type.Array(Type.String(), { minItems: 1 }),
    Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 }),
    Type.Array(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 }), { minItems: 1 }),
  ]),

  encoding_format: Type.Optional(Type.Union([Type.Literal('float'), Type.Literal('base64')])),
  dimensions: Type.Optional(Type.Integer({ minimum: 1 })),
  user: Type.Optional(Type.String()),
});

export type EmbeddingsBody = Static<typeof EmbeddingsBody>;
