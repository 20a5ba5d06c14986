/**
 * Prompt DLP (data loss prevention): what a tenant's policy says about secrets and personal data
 * found in the text a request sends to the model.
 */

/** `off`: nothing is scanned. `mask`: each finding is replaced by `[REDACTED:<rule>]` before the provider sees it. `block`: the request is refused (400). */
export type DlpMode = 'off' | 'mask' | 'block';

export const DLP_MODES: readonly DlpMode[] = ['off', 'mask', 'block'];

/** The optional personal-data rules, by their policy name. */
export type PiiRuleName = 'email' | 'phone' | 'card' | 'iban';

export const PII_RULE_NAMES: readonly PiiRuleName[] = ['email', 'phone', 'card', 'iban'];

/** A tenant's DLP settings (`policy.dlp`). */
export interface DlpPolicy {
  /** Provider and other credentials, found by the detector library (src/detect). */
  secrets: DlpMode;
  /** Personal data, found by the rules named in `piiRules`. */
  pii: DlpMode;
  piiRules: readonly PiiRuleName[];
}

/** DLP off: the default, so that a gateway upgrade does not change what reaches the provider. */
export const DLP_OFF: DlpPolicy = Object.freeze({ secrets: 'off', pii: 'off', piiRules: PII_RULE_NAMES });

/** One finding in a request. Never holds the value: its rule, a fingerprint and where it was. */
export interface DlpFinding {
  /** a detector rule id (`openai-project-key`) or a PII rule id (`pii-email`) */
  ruleId: string;
  kind: 'secret' | 'pii';
  /**
   * Secrets: `sha256:` + 16 hex (the detector's fingerprint, the same one `keywarden scan` prints).
   * Personal data: a keyed HMAC (`hmac-sha256:…`), because a plain hash of a phone or card number
   * can be reversed by trying every number.
   */
  fingerprint: string;
  /** JSON path of the text part (`messages[1].content[0].text`) */
  path: string;
}
