// The work stack, reused across calls: containers still to visit and their levels.
const nodes: unknown[] = [];
const levels: number[] = [];

/**
 * Whether a parsed JSON value nests containers (objects, arrays) more than `limit` levels deep;
 * the value itself is level 1.
 *
 * Iterative on purpose: a recursive walk is what a depth bomb is built to overflow. The walk is
 * linear in the number of containers (bounded by the body-size limit) and stops at the first
 * container past the limit, so a deep chain is refused without walking below it.
 * The work stack is kept between calls (the gateway validates one body at a time on its
 * thread) and emptied before returning, so it holds no request data afterwards.
 *
 * @example exceedsDepth(JSON.parse('[[[]]]'), 2) // true
 */
export function exceedsDepth(root: unknown, limit: number): boolean {
  if (typeof root !== 'object' || root === null) return false;
  nodes[0] = root;
  levels[0] = 1;
  let top = 1;
  let tooDeep = false;
  walk: while (top > 0) {
    top--;
    const node = nodes[top];
    const level = levels[top] ?? 0;
    nodes[top] = undefined;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const child: unknown = node[i];
        if (typeof child !== 'object' || child === null) continue;
        if (level >= limit) {
          tooDeep = true;
          break walk;
        }
        nodes[top] = child;
        levels[top] = level + 1;
        top++;
      }
    } else {
      const record = node as Record<string, unknown>;
      for (const key in record) {
        const child = record[key];
        if (typeof child !== 'object' || child === null) continue;
        if (level >= limit) {
          tooDeep = true;
          break walk;
        }
        nodes[top] = child;
        levels[top] = level + 1;
        top++;
      }
    }
  }
  // Popped slots are already cleared; on an early stop, clear what is left.
  for (let i = 0; i < top; i++) nodes[i] = undefined;
  return tooDeep;
}
