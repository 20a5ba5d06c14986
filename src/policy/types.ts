import type { Endpoint } from '../providers/types.js';
import type { Limits } from '../quota/types.js';
import type { DlpPolicy } from '../dlp/types.js';
import type { CapabilityPolicy } from './capabilities.js';

/**
 * What a tenant may ask for. Deny by default: a field, model, tool or file not allowed here is refused.
 * Built from `tenants.defaults.policy` in config, overridden per tenant.
 */
export interface TenantPolicy {
  /** Public model names the tenant may use. */
  models: readonly string[];
  /**
   * Optional request fields the tenant may use (`temperature`, `stream`, …). Each endpoint's
   * required fields are always allowed; tool fields are governed by `tools`, not by this list.
   */
  params: readonly string[];
  /** Whether tool definitions, tool choice and tool-call/tool-result messages are allowed. */
  tools: boolean;
  /** Whether image, audio and file inputs are allowed. */
  files: boolean;
  /**
   * Per-model capability allowlist (`<model or *>` → capability names). When present it replaces
   * `tools` and `files`: a request using a capability outside its model's list (falling back to
   * `*`, else nothing) is refused with `policy_capability_not_allowed`. Absent = the booleans apply.
   */
  capabilities?: CapabilityPolicy;
  /** Largest request body in bytes. */
  maxBodyBytes: number;
  /** Largest output-token cap; a larger client value is clamped to it, a missing one set to it. */
  maxOutputTokens: number;
  /** Most messages (or input items) in one request. */
  maxMessages: number;
  /** Most image/audio/file parts in one request. */
  maxAttachments: number;
  /** Largest single attachment, measured as the length of its inline data or URL string. */
  maxAttachmentBytes: number;
  /** Rate, token and money limits over the whole tenant (all its keys together). */
  limits: Limits;
  /** The same limits applied to each of the tenant's keys on its own (a key's own limits win). */
  keyLimits: Limits;
  /** Prompt DLP (src/dlp): secrets and personal data in the text sent to the model. Absent = off. */
  dlp?: DlpPolicy;
}

/** The outcome of validating one request body against its endpoint schema and the tenant policy. */
export interface ValidatedRequest {
  endpoint: Endpoint;
  /** The public model name from the body. */
  model: string;
  stream: boolean;
  /** Whether an OpenAI chat client asked for the usage chunk (`stream_options.include_usage`). */
  clientWantsStreamUsage: boolean;
  /**
   * The body's output-cap field name for this endpoint (`max_tokens`, `max_completion_tokens`,
   * `max_output_tokens`), or undefined for embeddings.
   */
  maxTokensField: string | undefined;
  /** The output cap to send upstream: the client's value clamped to the policy cap, or the cap. */
  maxOutputTokens: number | undefined;
}
