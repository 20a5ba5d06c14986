/**
 * The `dlp` request stage: after validation, before admission. It scans the text a request
 * sends to the model (src/dlp/text-parts.ts) for secrets (the detector library, src/detect) and,
 * when the tenant asks for it, personal data (src/dlp/pii.ts), and per the tenant's policy
 *
 *   - `off`   does nothing (a tenant with both kinds off costs one property read),
 *   - `mask`  replaces each finding with `[REDACTED:<rule>]` in a copy of the body; the copy is
 *             what the admission estimate, content sampling and the provider see,
 *   - `block` refuses the request with 400 `dlp_secret_blocked` / `dlp_pii_blocked`, naming the
 *             rule and the field path, never the value.
 *
 * Every mask or block writes one audit row (`dlp.mask`, `dlp.block`) with the rule ids, the
 * fingerprints and the paths of what was found; never the values. The client's body is never
 * mutated.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { findSecrets, hasSecret } from '../detect/detector.js';
import { GatewayError } from '../errors/index.js';
import type { Endpoint } from '../providers/types.js';
import type { Principal } from '../auth/types.js';
import type { AuditEvent } from '../store/types.js';
import type { Logger } from '../log/logger.js';
import type { RequestContext, PreparedRequest } from '../server/proxy.js';
import { findPii } from './pii.js';
import { forEachTextPart, formatPath, setAtPath, type JsonPath } from './text-parts.js';
import type { DlpFinding, DlpPolicy } from './types.js';

/** What a scan decided for one body. */
export interface DlpResult {
  /** the body to forward: the original when nothing was masked, else a masked copy */
  body: Record<string, unknown>;
  findings: DlpFinding[];
  /** `none` when nothing was found (or DLP is off) */
  action: 'none' | 'mask' | 'block';
  /** set when `action` is `block`: the error to answer with */
  error: GatewayError | undefined;
}

export interface DlpStageOptions {
  /** Writes the `dlp.mask` / `dlp.block` audit rows. */
  audit?: (event: AuditEvent) => void;
  /**
   * Keyed fingerprint of a personal-data value (`hmac-sha256:…`), the audit trail's identifier
   * HMAC. Without one, a random per-process key is used (fingerprints then only match within one run).
   */
  fingerprintPii?: (value: string) => string;
  /** `audit.hash_key_ids`: name the tenant key by this HMAC in the audit row's actor. */
  hashKeyId?: (keyId: string) => string;
  logger?: Logger;
}

/** The placeholder a masked finding becomes. */
export function placeholder(ruleId: string): string {
  return `[REDACTED:${ruleId}]`;
}

interface Hit {
  start: number;
  end: number;
  finding: DlpFinding;
}

/** True when the policy scans nothing: the fast path. */
export function dlpOff(policy: DlpPolicy | undefined): boolean {
  return policy === undefined || (policy.secrets === 'off' && (policy.pii === 'off' || policy.piiRules.length === 0));
}

export function createDlpStage(options: DlpStageOptions = {}) {
  const fingerprintPii = options.fingerprintPii ?? (() => {
    const key = randomBytes(32);
    return (value: string) => `hmac-sha256:${createHmac('sha256', key).update(value, 'utf8').digest('hex')}`;
  })();

  /** Scans one text part; returns its hits in order, secrets before overlapping personal data. */
  function scan(text: string, path: JsonPath, policy: DlpPolicy): Hit[] {
    const hits: Hit[] = [];
    const at = formatPath(path);
    // the detector's literal-anchor pass is cheap; only text that holds a secret is scanned in full
    if (policy.secrets !== 'off' && hasSecret(text)) {
      for (const f of findSecrets(text)) {
        hits.push({ start: f.start, end: f.end, finding: { ruleId: f.ruleId, kind: 'secret', fingerprint: f.fingerprint, path: at } });
      }
    }
    if (policy.pii !== 'off' && policy.piiRules.length > 0) {
      for (const m of findPii(text, policy.piiRules)) {
        // a secret already covers this span (a key is not also a phone number)
        if (hits.some((h) => h.finding.kind === 'secret' && m.start < h.end && h.start < m.end)) continue;
        hits.push({ start: m.start, end: m.end, finding: { ruleId: m.ruleId, kind: 'pii', fingerprint: fingerprintPii(m.value), path: at } });
      }
      hits.sort((a, b) => a.start - b.start);
    }
    return hits;
  }

  /**
   * Scans the body's text parts under the policy and returns the body to forward with the
   * findings and the decision. Pure apart from fingerprinting: writes nothing, throws nothing.
   *
   * @example const r = dlp.apply('chat', body, { secrets: 'mask', pii: 'off', piiRules: [] }); forward(r.body)
   */
  function apply(endpoint: Endpoint, body: Record<string, unknown>, policy: DlpPolicy | undefined): DlpResult {
    if (policy === undefined || dlpOff(policy)) return { body, findings: [], action: 'none', error: undefined };
    const parts: Array<{ path: JsonPath; text: string; hits: Hit[] }> = [];
    forEachTextPart(endpoint, body, (text, path) => {
      const hits = scan(text, path, policy);
      if (hits.length > 0) parts.push({ path, text, hits });
    });
    if (parts.length === 0) return { body, findings: [], action: 'none', error: undefined };
    const findings = parts.flatMap((p) => p.hits.map((h) => h.finding));

    const blockedSecret = policy.secrets === 'block' ? findings.find((f) => f.kind === 'secret') : undefined;
    const blockedPii = policy.pii === 'block' ? findings.find((f) => f.kind === 'pii') : undefined;
    const blocked = blockedSecret ?? blockedPii;
    if (blocked) {
      const error = blocked.kind === 'secret'
        ? new GatewayError('dlp_secret_blocked', `the request holds a secret (rule ${blocked.ruleId}); remove it and send the request again`, { param: blocked.path })
        : new GatewayError('dlp_pii_blocked', `the request holds personal data (rule ${blocked.ruleId}); remove it and send the request again`, { param: blocked.path });
      return { body, findings, action: 'block', error };
    }

    // mask: a copy of the body, each finding replaced by its placeholder (the client's object is untouched)
    const masked = structuredClone(body);
    for (const part of parts) {
      let out = '';
      let pos = 0;
      for (const h of part.hits) {
        if (h.start < pos) continue;
        out += part.text.slice(pos, h.start) + placeholder(h.finding.ruleId);
        pos = h.end;
      }
      setAtPath(masked, part.path, out + part.text.slice(pos));
    }
    return { body: masked, findings, action: 'mask', error: undefined };
  }

  function auditEvent(ctx: RequestContext, principal: Principal, result: DlpResult, endpoint: Endpoint): AuditEvent {
    const actorKey = options.hashKeyId ? options.hashKeyId(principal.keyId) : principal.keyId;
    const list = (pick: (f: DlpFinding) => string) => result.findings.map(pick).join(',');
    return {
      ts: Date.now(), actor: `tenant-key:${actorKey}`, action: result.action === 'block' ? 'dlp.block' : 'dlp.mask', target: ctx.model,
      requestId: ctx.requestId, outcome: result.action === 'block' ? 'failure' : 'success',
      details: {
        tenant: principal.tenantId, endpoint, findings: result.findings.length,
        rules: [...new Set(result.findings.map((f) => f.ruleId))].join(','),
        // in finding order: the n-th fingerprint belongs to the n-th path
        fingerprints: list((f) => f.fingerprint), paths: list((f) => f.path),
        code: result.error?.code ?? null,
      },
    };
  }

  /**
   * The stage as the request path runs it: scans the prepared request, writes the audit row,
   * throws the block error, or returns the request with the masked body (the same object when
   * nothing changed).
   */
  function run(ctx: RequestContext, prepared: PreparedRequest): PreparedRequest {
    const principal = ctx.principal as Principal;
    const policy = principal.policy.dlp;
    if (dlpOff(policy)) return prepared;
    const endpoint = prepared.request.endpoint;
    const result = apply(endpoint, prepared.request.body, policy);
    if (result.action === 'none') return prepared;
    options.audit?.(auditEvent(ctx, principal, result, endpoint));
    const rules = [...new Set(result.findings.map((f) => f.ruleId))];
    if (result.error) {
      options.logger?.info({ event: 'dlp_block', requestId: ctx.requestId, rules, findings: result.findings.length }, 'request refused by prompt DLP');
      throw result.error;
    }
    options.logger?.info({ event: 'dlp_mask', requestId: ctx.requestId, rules, findings: result.findings.length }, 'prompt DLP masked the request');
    // a sampled request is stored as forwarded: masked
    if (ctx.sample) ctx.sample.request = result.body;
    return { ...prepared, request: { ...prepared.request, body: result.body } };
  }

  return { apply, run };
}

export type DlpStage = ReturnType<typeof createDlpStage>;
