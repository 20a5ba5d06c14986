import { KindGuard, type TObject, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, ValueErrorType, type TypeCheck, type ValueError, type ValueErrorIterator } from '@sinclair/typebox/compiler';
import { Errors } from '@sinclair/typebox/errors';
import { looksLikeKey } from '../detect/key-shape.js';
import { GatewayError } from '../errors/index.js';

/**
 * Turns a failed schema check into one safe, coded GatewayError.
 *
 * Runs only after `Check()` has failed, so none of this is on the success path. It first
 * narrows to the smallest failing node with compiled checks, then walks TypeBox's `Errors()`
 * there. Where an error is a union ("matches no branch"), it picks the branch the client
 * evidently meant (by value kind, then by discriminator fields such as `role` and `type`) and
 * descends into that branch, so the path points at the real mistake
 * (`messages[2].content[0].foo`) rather than at `messages[2]`.
 *
 * SECURITY: messages and params are built from the JSON path and the schema only, never from a
 * request value (request content must not reach logs or responses). A field name is echoed
 * only when {@link echoName} allows it; any other name is shown as `(field)`.
 */
export function schemaError(check: TypeCheck<TSchema>, body: unknown): GatewayError {
  const at = locate(check.Schema(), body);
  let error = firstError(Errors(at.schema, at.value));
  // The depth cap bounds nesting, so this loop is bounded too; the counter is a second guard.
  for (let hops = 0; error !== undefined && error.type === ValueErrorType.Union && hops < 128; hops++) {
    const branch = chooseBranch(error.schema, error.value);
    if (typeof branch !== 'number') {
      const path = renderPath(at.pointer + error.path, body, branch.key);
      if (branch.unknown === true) {
        return new GatewayError('request_unknown_field', `unknown field "${path}"`, { param: path });
      }
      return new GatewayError('request_invalid', `"${path}" ${branch.expect}`, { param: path });
    }
    const variantErrors = error.errors[branch];
    const next = variantErrors === undefined ? undefined : firstError(variantErrors);
    if (next === undefined) break;
    error = next;
  }
  if (error === undefined) return new GatewayError('request_invalid', 'request body is invalid');

  const path = renderPath(at.pointer + error.path, body, undefined);
  if (error.type === ValueErrorType.ObjectAdditionalProperties) {
    return new GatewayError('request_unknown_field', `unknown field "${path}"`, { param: path });
  }
  return new GatewayError('request_invalid', `"${path}" ${expectation(error)}`, { param: path });
}

/** A failing node of the body: its schema, its value, and its JSON pointer from the body. */
interface Located {
  schema: TSchema;
  value: unknown;
  pointer: string;
}

/**
 * Descends from the body to the smallest node that fails, using compiled checks, so the error
 * walk that follows runs over one message or part instead of the whole body. (TypeBox's error
 * walk re-checks every union member interpretively; on a large body that costs far more than
 * the compiled success path.) Problems of an object itself (missing or unknown fields) stop
 * the descent there, as TypeBox reports them before property errors.
 */
function locate(root: TSchema, body: unknown): Located {
  let schema = root;
  let value = body;
  let pointer = '';
  for (let hops = 0; hops < 256; hops++) {
    let next: Located | undefined;
    if (KindGuard.IsUnion(schema)) {
      const branch = chooseBranch(schema, value);
      const variant = typeof branch === 'number' ? schema.anyOf[branch] : undefined;
      // A value failing the union fails every branch, the chosen one included.
      if (variant !== undefined) next = { schema: variant, value, pointer };
    } else if (KindGuard.IsObject(schema) && isObject(value)) {
      if (ownProblem(schema, value)) break;
      for (const name of Object.keys(schema.properties)) {
        const property = schema.properties[name];
        if (property === undefined || !Object.hasOwn(value, name)) continue;
        if (!checker(property).Check(value[name])) {
          next = { schema: property, value: value[name], pointer: `${pointer}/${escapeKey(name)}` };
          break;
        }
      }
    } else if (KindGuard.IsArray(schema) && Array.isArray(value)) {
      const { minItems, maxItems } = schema;
      if ((minItems !== undefined && value.length < minItems) || (maxItems !== undefined && value.length > maxItems)) break;
      const items = checker(schema.items);
      for (let i = 0; i < value.length; i++) {
        if (!items.Check(value[i])) {
          next = { schema: schema.items, value: value[i], pointer: `${pointer}/${i}` };
          break;
        }
      }
    }
    if (next === undefined) break;
    ({ schema, value, pointer } = next);
  }
  return { schema, value, pointer };
}

function ownProblem(schema: TObject, value: Record<string, unknown>): boolean {
  for (const name of schema.required ?? []) if (!Object.hasOwn(value, name)) return true;
  if (schema.additionalProperties !== false) return false;
  for (const name of Object.keys(value)) if (!Object.hasOwn(schema.properties, name)) return true;
  return false;
}

function escapeKey(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Compiled checks for schema nodes, made on first need (error path only) and kept. */
const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>();
function checker(schema: TSchema): TypeCheck<TSchema> {
  let compiled = checkers.get(schema);
  if (compiled === undefined) {
    compiled = TypeCompiler.Compile(schema);
    checkers.set(schema, compiled);
  }
  return compiled;
}

/**
 * The first error, except that a missing field gives way to a wrong discriminator on the same
 * object: for `{"type":"mcp","server_url":…}` as a function tool, `type` is the real mistake,
 * not the absent `name`. (TypeBox reports missing fields before property values.)
 */
function firstError(errors: ValueErrorIterator): ValueError | undefined {
  const first = errors.First();
  if (first === undefined || first.type !== ValueErrorType.ObjectRequiredProperty) return first;
  const parent = first.path.slice(0, first.path.lastIndexOf('/'));
  for (let seen = 0; seen < 32; seen++) {
    const next = errors.First();
    if (next === undefined) break;
    const sameObject = next.path.slice(0, next.path.lastIndexOf('/')) === parent;
    if (sameObject && literalSet(next.schema) !== undefined && next.value !== undefined) return next;
  }
  return first;
}

/** Field names that may be echoed back; anything else (spaces, quotes, control bytes, canaries with odd characters) becomes `(field)`. */
export const SAFE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A client-supplied name (a field name, a tenant name from a URL) as it may appear in an error
 * message or `param`: itself when it is a plain identifier ({@link SAFE_NAME}) and not shaped like
 * a key or token, else `placeholder`. Ordinary names are echoed because they help the caller
 * find the mistake.
 *
 * SECURITY: identifier characters alone are not enough: a 63-character tenant key or an
 * `sk-…` key passes {@link SAFE_NAME}, and a key sent as a field name must not come back in the
 * error (which may be logged or shown by a client library).
 *
 * @example echoName('temprature') // 'temprature'
 * @example echoName('sk-FAKE-TEST-ONLY-0123456789') // '(field)'
 */
export function echoName(name: string, placeholder = '(field)'): string {
  return SAFE_NAME.test(name) && !looksLikeKey(name) ? name : placeholder;
}

const INDEX = /^\d{1,10}$/;
/** Schema literals we are willing to print (our own constants, never request values). */
const SAFE_LITERAL = /^[A-Za-z0-9_./-]{1,64}$/;

/**
 * Renders a TypeBox JSON pointer (`/messages/2/content/0/foo`) as `messages[2].content[0].foo`,
 * walking the body to tell array indices from object keys. `extraKey` appends one more key.
 */
export function renderPath(pointer: string, body: unknown, extraKey: string | undefined): string {
  let out = '';
  let node: unknown = body;
  const segments = pointer === '' ? [] : pointer.slice(1).split('/');
  for (const raw of segments) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      out += INDEX.test(segment) ? `[${segment}]` : '[?]';
      node = node[Number(segment)];
    } else {
      out += key(out, segment);
      node = isObject(node) && Object.hasOwn(node, segment) ? node[segment] : undefined;
    }
  }
  if (extraKey !== undefined) out += key(out, extraKey);
  return out === '' ? '(body)' : out;
}

function key(prefix: string, name: string): string {
  const shown = echoName(name);
  return prefix === '' ? shown : `.${shown}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What the failing schema node wanted, in words. Uses only schema data. */
function expectation(error: ValueError): string {
  const schema = error.schema;
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    case ValueErrorType.String:
      return 'must be a string';
    case ValueErrorType.Number:
      return 'must be a number';
    case ValueErrorType.Integer:
      return 'must be an integer';
    case ValueErrorType.Boolean:
      return 'must be a boolean';
    case ValueErrorType.Null:
      return 'must be null';
    case ValueErrorType.Array:
      return 'must be an array';
    case ValueErrorType.Object:
      return 'must be an object';
    case ValueErrorType.Literal:
      return typeof schema['const'] === 'string' && SAFE_LITERAL.test(schema['const'])
        ? `must be "${schema['const']}"`
        : 'is not a supported value';
    case ValueErrorType.StringMinLength:
      return schema['minLength'] === 1 ? 'must not be empty' : `must be at least ${num(schema['minLength'])} characters`;
    case ValueErrorType.StringMaxLength:
      return `must be at most ${num(schema['maxLength'])} characters`;
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.IntegerMinimum:
      return `must be at least ${num(schema['minimum'])}`;
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.IntegerMaximum:
      return `must be at most ${num(schema['maximum'])}`;
    case ValueErrorType.ArrayMinItems:
      return schema['minItems'] === 1 ? 'must not be empty' : `must have at least ${num(schema['minItems'])} items`;
    case ValueErrorType.ArrayMaxItems:
      return `must have at most ${num(schema['maxItems'])} items`;
    default:
      return 'is invalid';
  }
}

function num(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : '?';
}

// ---------------------------------------------------------------------------------------------
// Choosing the union branch the client meant
// ---------------------------------------------------------------------------------------------

type JsonKind = 'string' | 'number' | 'integer' | 'boolean' | 'null' | 'array' | 'object' | 'any';

/** A branch index to descend into, or a problem with the union value itself. */
type Branch = number | { key: string | undefined; expect: string; unknown?: true };

function chooseBranch(union: TSchema, value: unknown): Branch {
  const variants: readonly TSchema[] = KindGuard.IsUnion(union) ? union.anyOf : [];
  const kind = valueKind(value);
  const byKind: number[] = [];
  for (let i = 0; i < variants.length; i++) {
    const variant = variants[i];
    if (variant !== undefined && acceptsKind(variant, kind, value)) byKind.push(i);
  }
  if (byKind.length === 0) return { key: undefined, expect: `must be ${describeKinds(variants)}` };

  for (const i of byKind) {
    const variant = variants[i];
    if (variant !== undefined && compatible(variant, value)) return i;
  }
  if (byKind.length === 1 && byKind[0] !== undefined) return byKind[0];

  if (!isObject(value)) {
    const allowed: unknown[] = [];
    for (const i of byKind) allowed.push(...(literalSet(variants[i]) ?? []));
    return { key: undefined, expect: oneOf(allowed) };
  }

  // An object matching no branch: name the discriminator (`role`, `type`) that is wrong or missing.
  const candidates = byKind.map((i) => variants[i]).filter((v): v is TSchema => v !== undefined);
  const keys: string[] = [];
  for (const variant of candidates) {
    if (!KindGuard.IsObject(variant)) continue;
    for (const name of Object.keys(variant.properties)) {
      if (literalSet(variant.properties[name]) !== undefined && !keys.includes(name)) keys.push(name);
    }
  }
  for (const name of keys) {
    if (!Object.hasOwn(value, name)) continue;
    const allowed: unknown[] = [];
    for (const variant of candidates) {
      if (KindGuard.IsObject(variant)) allowed.push(...(literalSet(variant.properties[name]) ?? []));
    }
    if (!allowed.includes(value[name])) return { key: name, expect: oneOf(allowed) };
  }
  // A key no branch knows is an unknown field, whatever else is wrong (`{"url": …}` as a message).
  for (const name of Object.keys(value)) {
    if (!candidates.some((variant) => KindGuard.IsObject(variant) && Object.hasOwn(variant.properties, name))) {
      return { key: name, expect: '', unknown: true };
    }
  }
  for (const name of keys) {
    const requiredEverywhere = candidates.every(
      (variant) => KindGuard.IsObject(variant) && (variant.required ?? []).includes(name),
    );
    if (requiredEverywhere && !Object.hasOwn(value, name)) return { key: name, expect: 'is required' };
  }
  return { key: undefined, expect: 'does not match any accepted form' };
}

function valueKind(value: unknown): JsonKind {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  switch (typeof value) {
    case 'string':
      return 'string';
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'object':
      return 'object';
    default:
      return 'any';
  }
}

function schemaKinds(schema: TSchema, out: Set<JsonKind>): Set<JsonKind> {
  if (KindGuard.IsUnion(schema)) {
    for (const variant of schema.anyOf) schemaKinds(variant, out);
  } else if (KindGuard.IsLiteral(schema)) {
    out.add(valueKind(schema.const));
  } else if (KindGuard.IsString(schema)) {
    out.add('string');
  } else if (KindGuard.IsInteger(schema)) {
    out.add('integer');
  } else if (KindGuard.IsNumber(schema)) {
    out.add('number');
  } else if (KindGuard.IsBoolean(schema)) {
    out.add('boolean');
  } else if (KindGuard.IsNull(schema)) {
    out.add('null');
  } else if (KindGuard.IsArray(schema)) {
    out.add('array');
  } else if (KindGuard.IsObject(schema) || KindGuard.IsRecord(schema)) {
    out.add('object');
  } else {
    out.add('any');
  }
  return out;
}

function acceptsKind(schema: TSchema, kind: JsonKind, value: unknown): boolean {
  const kinds = schemaKinds(schema, new Set());
  if (kinds.has('any') || kinds.has(kind)) return true;
  return kind === 'number' && kinds.has('integer') && Number.isInteger(value);
}

const KIND_WORDS: Record<JsonKind, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'a boolean',
  null: 'null',
  array: 'an array',
  object: 'an object',
  any: 'a value',
};

function describeKinds(variants: readonly TSchema[]): string {
  const kinds = new Set<JsonKind>();
  for (const variant of variants) schemaKinds(variant, kinds);
  if (kinds.has('number')) kinds.delete('integer');
  // `null` is accepted but rarely what a client means; name it last.
  const words = [...kinds].sort((a, b) => Number(a === 'null') - Number(b === 'null')).map((k) => KIND_WORDS[k]);
  return words.length <= 1 ? (words[0] ?? 'valid') : `${words.slice(0, -1).join(', ')} or ${words[words.length - 1] ?? ''}`;
}

/** The values a Literal, or a union of Literals (and null), allows; undefined for any other schema. */
function literalSet(schema: TSchema | undefined): unknown[] | undefined {
  if (schema === undefined) return undefined;
  if (KindGuard.IsLiteral(schema)) return [schema.const];
  if (!KindGuard.IsUnion(schema)) return undefined;
  const values: unknown[] = [];
  for (const variant of schema.anyOf) {
    if (KindGuard.IsLiteral(variant)) values.push(variant.const);
    else if (KindGuard.IsNull(variant)) values.push(null);
    else return undefined;
  }
  return values;
}

/** Whether an object value agrees with every discriminator (literal-valued field) of a branch. */
function compatible(variant: TSchema, value: unknown): boolean {
  const literals = literalSet(variant);
  if (literals !== undefined) return literals.includes(value);
  // Arrays: judge by the first item, so `[[1, 2]]` is read as token arrays, not strings.
  if (KindGuard.IsArray(variant) && Array.isArray(value)) {
    const first: unknown = value[0];
    return first === undefined || acceptsKind(variant.items, valueKind(first), first);
  }
  if (!KindGuard.IsObject(variant) || !isObject(value)) return true;
  const required = variant.required ?? [];
  for (const name of Object.keys(variant.properties)) {
    const allowed = literalSet(variant.properties[name]);
    if (allowed === undefined) continue;
    if (Object.hasOwn(value, name)) {
      if (!allowed.includes(value[name])) return false;
    } else if (required.includes(name)) {
      return false;
    }
  }
  return true;
}

function oneOf(allowed: readonly unknown[]): string {
  const shown = [...new Set(allowed)].filter((v): v is string => typeof v === 'string' && SAFE_LITERAL.test(v));
  if (shown.length === 0 || shown.length > 12) return 'is not a supported value';
  return shown.length === 1 ? `must be "${shown[0] ?? ''}"` : `must be one of ${shown.map((v) => `"${v}"`).join(', ')}`;
}
