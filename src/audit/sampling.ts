import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { AuditEvent, AuditTrailRepository, ContentSample, RecordRepository } from '../store/types.js';
import { parseEncKey } from '../secrets/backends/enc-file.js';
import { SecretError } from '../secrets/types.js';

/*
 * Optional content sampling for evaluation (off by default). A configured fraction of whole
 * (non-streamed) requests keeps its request body and answer, sealed with AES-256-GCM under a
 * key from the vault, until an expiry; the only way to read one is an admin call that is
 * itself audited. The plaintext never reaches a log line, a ledger or audit row, or an error.
 */

const FORMAT = 'keywarden-sample:1';

/** What GCM authenticates besides the ciphertext: the format and the request id (a sample cannot be moved to another request). */
function additionalData(requestId: string): Buffer {
  return Buffer.from(`${FORMAT}\n${requestId}`, 'utf8');
}

/** Seals a plaintext for one request: AES-256-GCM, a random 96-bit IV, the request id as AAD. */
export function sealSample(key: Buffer, requestId: string, plaintext: Buffer): { iv: Buffer; tag: Buffer; ciphertext: Buffer } {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(additionalData(requestId));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, tag: cipher.getAuthTag(), ciphertext };
}

/** Opens a sealed sample; throws when the key, the request id or any byte is wrong. */
export function openSample(key: Buffer, sample: Pick<ContentSample, 'requestId' | 'iv' | 'tag' | 'ciphertext'>): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sample.iv);
  decipher.setAAD(additionalData(sample.requestId));
  decipher.setAuthTag(sample.tag);
  return Buffer.concat([decipher.update(sample.ciphertext), decipher.final()]);
}

/** Decodes the sampling key (32 bytes, base64 or hex: `keywarden secrets gen-key` makes one); never echoes it. */
export function parseSampleKey(text: string): Buffer {
  try {
    return parseEncKey(text);
  } catch {
    throw new SecretError('audit.sampling.key', 'must be 32 bytes, base64 or hex encoded (make one with `keywarden secrets gen-key`)', 'invalid');
  }
}

export interface ContentSamplerOptions {
  /** The 32-byte AES key (from `audit.sampling.key`). */
  key: Buffer;
  /** Fraction of eligible requests kept, 0 to 1. */
  rate: number;
  retentionMs: number;
  trail: Pick<AuditTrailRepository, 'putSample'>;
  random?: () => number;
}

export interface ContentSampler {
  /** Whether this request is sampled (decided at validation, for whole answers only). */
  pick(): boolean;
  /** Seals and stores one request body and its answer (a JSON text). */
  keep(sample: { requestId: string; tenantId: string; request: Record<string, unknown>; answer: Buffer }, now?: number): Promise<void>;
}

/**
 * The sampler the record stage calls. `pick()` is a cheap coin toss; `keep()` seals
 * `{"request":…,"answer":…}` and stores it with its expiry.
 *
 * @example createContentSampler({ key, rate: 0.01, retentionMs: 7 * 86_400_000, trail: store.auditTrail })
 */
export function createContentSampler(options: ContentSamplerOptions): ContentSampler {
  if (options.key.length !== 32) throw new Error('the content sampling key must be 32 bytes');
  if (!(options.rate >= 0 && options.rate <= 1)) throw new Error('the content sampling rate must be between 0 and 1');
  const random = options.random ?? Math.random;
  return {
    pick: () => options.rate > 0 && random() < options.rate,
    async keep(sample, now = Date.now()) {
      // the answer was parsed as JSON by the relay stage, so it is spliced in as it came
      const plaintext = Buffer.concat([
        Buffer.from(`{"request":${JSON.stringify(sample.request)},"answer":`, 'utf8'), sample.answer, Buffer.from('}', 'utf8'),
      ]);
      const sealed = sealSample(options.key, sample.requestId, plaintext);
      plaintext.fill(0);
      await options.trail.putSample({
        requestId: sample.requestId, tenantId: sample.tenantId, createdAt: now, expiresAt: now + options.retentionMs, ...sealed,
      });
    },
  };
}

export interface SampleView {
  request_id: string;
  tenant: string;
  created_at: string;
  expires_at: string;
  request: unknown;
  answer: unknown;
}

/** Thrown when a sample exists but cannot be opened (the sampling key changed, or the row was altered). */
export class SampleUnreadableError extends Error {
  constructor() {
    super('the content sample cannot be decrypted with the configured key');
    this.name = 'SampleUnreadableError';
  }
}

/**
 * The admin read of a sample. Every attempt writes a `sample.read` audit row, committed before
 * any content is returned: when the audit row cannot be written, nothing is returned.
 */
export function createSampleReader(options: { key: Buffer; trail: Pick<AuditTrailRepository, 'getSample'>; records: Pick<RecordRepository, 'append'> }) {
  return async function readSample(requestId: string, actor: string, adminRequestId: string | null, now = Date.now()): Promise<SampleView | undefined> {
    const sample = await options.trail.getSample(requestId, now);
    let plaintext: Buffer | undefined;
    let reason: string | null = sample ? null : 'not_found';
    if (sample) {
      try {
        plaintext = openSample(options.key, sample);
      } catch {
        reason = 'undecryptable';
      }
    }
    const event: AuditEvent = {
      ts: now, actor, action: 'sample.read', target: requestId, outcome: reason === null ? 'success' : 'failure', requestId: adminRequestId,
      details: { tenant: sample?.tenantId ?? null, reason },
    };
    // audit first: a read that cannot be recorded does not happen
    await options.records.append([], [event]);
    if (!sample) return undefined;
    if (!plaintext) throw new SampleUnreadableError();
    const parsed = JSON.parse(plaintext.toString('utf8')) as { request: unknown; answer: unknown };
    plaintext.fill(0);
    return {
      request_id: sample.requestId, tenant: sample.tenantId, created_at: new Date(sample.createdAt).toISOString(),
      expires_at: new Date(sample.expiresAt).toISOString(), request: parsed.request, answer: parsed.answer,
    };
  };
}

export type SampleReader = ReturnType<typeof createSampleReader>;
