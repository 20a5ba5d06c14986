/**
 * Capability allowlists (docs/configuration.md, "Capabilities"): what a tenant may ask a model
 * to do beyond plain text in, text out. Each capability maps to the request fields that use it,
 * per endpoint; src/policy/validate.ts finds them.
 */

/** Every capability name a policy may list. */
export const CAPABILITY_NAMES = [
  'tools',
  'web_search',
  'file_search',
  'code_interpreter',
  'image_generation',
  'computer_use',
  'files',
  'images',
  'structured_output',
  'audio',
] as const;

export type Capability = (typeof CAPABILITY_NAMES)[number];

/** Per model (or `*` for every model not named), the capabilities the tenant may request. */
export type CapabilityPolicy = Readonly<Record<string, readonly Capability[]>>;

/** The capabilities that configure tool use: any of them allows a bare `tool_choice` mode. */
export const TOOL_CAPABILITIES: readonly Capability[] = [
  'tools',
  'web_search',
  'file_search',
  'code_interpreter',
  'image_generation',
  'computer_use',
];

/** The Responses built-in tool `type`s and the capability each one needs. */
export const BUILT_IN_TOOL_CAPABILITY: Readonly<Record<string, Capability>> = Object.freeze({
  web_search: 'web_search',
  web_search_preview: 'web_search',
  file_search: 'file_search',
  code_interpreter: 'code_interpreter',
  image_generation: 'image_generation',
  computer_use_preview: 'computer_use',
});

export function isCapability(value: unknown): value is Capability {
  return typeof value === 'string' && (CAPABILITY_NAMES as readonly string[]).includes(value);
}

/**
 * The allowlist for one model: its own entry, else the `*` entry, else nothing.
 * Undefined when the policy has no `capabilities` (the legacy `tools`/`files` booleans apply).
 */
export function capabilitiesFor(capabilities: CapabilityPolicy | undefined, model: string): ReadonlySet<Capability> | undefined {
  if (capabilities === undefined) return undefined;
  const list = Object.hasOwn(capabilities, model) ? capabilities[model] : capabilities['*'];
  return new Set(list ?? []);
}
