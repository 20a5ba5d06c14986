import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { AuditEvent, AuditTrailRepository, ContentSample, RecordRepository, SampleQuery } from '../store/types.js';
import { parseEncKey } from '../secrets/backends/enc-file.js';
import { SecretError } from '../secrets/types.js';

/*
 * Optional content sampling for evaluation (off by default). A configured fraction of whole
 * (non-streamed) requests keeps its request body and answer, sealed with AES-256-GCM under a
 * key from the vault, until an expiry; the only way to read one is an admin call that is
 * itself audited. The plaintext never reaches a log line, a ledger or audit row, or an error.
 *
 * The client chooses its request id (`x-request-id` is kept when well-formed), so a sample is
 * not keyed by it: each gets a random sample id from the gateway, and a read by request id
 * returns every sample stored under it, each with its tenant. Nothing a client sends can
 * pre-empt, replace, hide or skip another request's sample.
 */

/** What a sample is sealed to besides its bytes: every column of its row but the IV, tag and ciphertext. */
export type SampleBinding = Pick<ContentSample, 'sampleId' | 'requestId' | 'tenantId' | 'createdAt' | 'expiresAt'>;

/**
 * What GCM authenticates besides the ciphertext. Version 2 (every sample stored now) binds the
 * gateway-made sample id, the request id, the tenant and both times, as JSON so no field can run
 * into the next: a sealed sample moved to another row, another request or tenant, or given a
 * later expiry no longer opens. Version 1 (samples stored before the sample id existed) bound
 * the request id alone; such rows are only ever opened, never made.
 */
function additionalData(version: 1 | 2, b: SampleBinding): Buffer {
  if (version === 1) return Buffer.from(`keywarden-sample:1\n${b.requestId}`, 'utf8');
  return Buffer.from(`keywarden-sample:2\n${JSON.stringify([b.sampleId, b.requestId, b.tenantId, b.createdAt, b.expiresAt])}`, 'utf8');
}

/** A fresh sample id: the gateway's, never the client's, so no request can take another's place. */
export function newSampleId(): string {
  return `smp_${randomBytes(16).toString('hex')}`;
}

/** Seals a plaintext as one sample (AAD version 2): AES-256-GCM, a random 96-bit IV. */
export function sealSample(key: Buffer, binding: SampleBinding, plaintext: Buffer): { aadVersion: 2; iv: Buffer; tag: Buffer; ciphertext: Buffer } {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(additionalData(2, binding));
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { aadVersion: 2, iv, tag: cipher.getAuthTag(), ciphertext };
}

/** Opens a sealed sample; throws when the key, any bound field or any byte is wrong. */
export function openSample(key: Buffer, sample: SampleBinding & Pick<ContentSample, 'aadVersion' | 'iv' | 'tag' | 'ciphertext'>): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sample.iv);
  decipher.setAAD(additionalData(sample.aadVersion, sample));
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
      const binding: SampleBinding = { sampleId: newSampleId(), requestId: sample.requestId, tenantId: sample.tenantId, createdAt: now, expiresAt: now + options.retentionMs };
      const sealed = sealSample(options.key, binding, plaintext);
      plaintext.fill(0);
      await options.trail.putSample({ ...binding, ...sealed });
    },
  };
}

export interface SampleView {
  sample_id: string;
  request_id: string;
  tenant_id: string;
  created_at: string;
  expires_at: string;
  /** Absent when `error` is set. */
  request?: unknown;
  answer?: unknown;
  /** `undecryptable`: the sampling key changed, or the row was altered or moved (its content is not returned). */
  error?: 'undecryptable';
}

/** Where the next page starts: the last sample of this one, as `<created_at ms>.<sample_id>`. */
export type SampleCursor = NonNullable<SampleQuery['after']>;

export function formatSampleCursor(c: SampleCursor): string {
  return `${c.createdAt}.${c.sampleId}`;
}

/** Parses a cursor made by `formatSampleCursor`; undefined when it is not one. */
export function parseSampleCursor(text: string): SampleCursor | undefined {
  const m = /^(\d{1,15})\.(smp_[0-9a-f]{32})$/.exec(text);
  return m ? { createdAt: Number(m[1]), sampleId: m[2] as string } : undefined;
}

/** Samples returned by one read at most: each holds a whole request body and answer. */
export const SAMPLES_PER_READ = 10;

export interface SampleReadQuery {
  requestId: string;
  /** Only this tenant's samples (an id). */
  tenantId?: string;
  after?: SampleCursor;
}

/**
 * The admin read of the samples of one request id: every unexpired sample recorded under it,
 * whichever tenant sent it, oldest first, a page at a time. Every attempt writes audit rows,
 * committed before any content is returned (when they cannot be written, nothing is returned):
 * one `sample.read` row per sample returned, naming its tenant and sample id (so a tenant-scoped
 * audit query sees reads of its own samples), or one `not_found` row when there is none.
 */
export function createSampleReader(options: { key: Buffer; trail: Pick<AuditTrailRepository, 'getSamples'>; records: Pick<RecordRepository, 'append'> }) {
  return async function readSamples(query: SampleReadQuery, actor: string, adminRequestId: string | null, now = Date.now()): Promise<{ samples: SampleView[]; next: string | null }> {
    // one more than a page, to know whether there is a next one
    const found = await options.trail.getSamples({
      requestId: query.requestId, now, limit: SAMPLES_PER_READ + 1,
      ...(query.tenantId !== undefined ? { tenantId: query.tenantId } : {}), ...(query.after ? { after: query.after } : {}),
    });
    const page = found.slice(0, SAMPLES_PER_READ);
    const opened = page.map((sample) => {
      try {
        return { sample, plaintext: openSample(options.key, sample) as Buffer | undefined };
      } catch {
        return { sample, plaintext: undefined };
      }
    });
    const base = { ts: now, actor, action: 'sample.read', target: query.requestId, requestId: adminRequestId };
    const events: AuditEvent[] = opened.length === 0
      ? [{ ...base, outcome: 'failure', details: { tenant: query.tenantId ?? null, sample: null, reason: 'not_found' } }]
      : opened.map(({ sample, plaintext }) => ({
        ...base, outcome: plaintext ? 'success' : 'failure',
        details: { tenant: sample.tenantId, sample: sample.sampleId, reason: plaintext ? null : 'undecryptable' },
      }));
    try {
      // audit first: a read that cannot be recorded does not happen
      await options.records.append([], events);
    } catch (err) {
      for (const o of opened) o.plaintext?.fill(0);
      throw err;
    }
    const samples = opened.map(({ sample, plaintext }): SampleView => {
      const view: SampleView = {
        sample_id: sample.sampleId, request_id: sample.requestId, tenant_id: sample.tenantId,
        created_at: new Date(sample.createdAt).toISOString(), expires_at: new Date(sample.expiresAt).toISOString(),
      };
      if (!plaintext) return { ...view, error: 'undecryptable' };
      const parsed = JSON.parse(plaintext.toString('utf8')) as { request: unknown; answer: unknown };
      plaintext.fill(0);
      return { ...view, request: parsed.request, answer: parsed.answer };
    });
    const last = page[page.length - 1];
    const next = found.length > SAMPLES_PER_READ && last ? formatSampleCursor({ createdAt: last.createdAt, sampleId: last.sampleId }) : null;
    return { samples, next };
  };
}

export type SampleReader = ReturnType<typeof createSampleReader>;
