import { Type, type TObject, type TProperties, type TSchema, type TNull, type TUnion } from '@sinclair/typebox';

/**
 * Building blocks shared by the endpoint schemas.
 *
 * Every object is closed (`additionalProperties: false`), so a field we do not know is refused
 * at any depth: no request field can smuggle an upstream URL, header or provider option past
 * the gateway. The only open objects are the free-form JSON slots the provider APIs define
 * (tool parameter schemas, tool-call inputs); they are marked with {@link FREE_FORM} and still
 * fall under the nesting-depth cap. A test walks every schema to hold this rule.
 */

/** Schema option marking a deliberately open object (any JSON object inside). */
export const FREE_FORM = 'x-keywarden-free-form';

/** A closed object: unknown fields are refused. */
export function Closed<T extends TProperties>(properties: T): TObject<T> {
  return Type.Object(properties, { additionalProperties: false });
}

/** `T | null`, as the OpenAI SDKs send explicit nulls for many optional fields. */
export function Nullable<T extends TSchema>(schema: T): TUnion<[T, TNull]> {
  return Type.Union([schema, Type.Null()]);
}

/**
 * Any JSON object: a JSON Schema, a tool-call input. Open on purpose (the provider defines no
 * shape for it); the nesting-depth cap still applies.
 */
export function FreeFormObject(): TObject<Record<string, never>> {
  return Type.Object({}, { additionalProperties: true, [FREE_FORM]: true });
}

/** A map of string to string (OpenAI `metadata`). */
export const StringMap = Type.Record(Type.String(), Type.String());

/** An output-token cap as sent by clients. */
export const TokenCount = Type.Integer({ minimum: 1 });

/** `{ "type": "text", "text": "…" }`, the text part shared by the OpenAI chat roles. */
export const ChatTextPart = Closed({
  type: Type.Literal('text'),
  text: Type.String(),
});
