// Where the page is in each destination's stream, so it can resume after a lost connection
// without a gap or a duplicate. Every MESSAGE names its place: `message-id` is
// `<topic>-<partition>-<offset>` and `x-cursor` lists that position for every partition
// feeding the destination as of the message. A feed keeps the latest of these per partition
// (the cursor sent back as `x-resume-after`) and the most recent message ids.
// No DOM here, so the Node unit tests import it.

export const RECENT_IDS = 500;   // message ids remembered per destination, the duplicate safety net

// The position `<topic>-<partition>-<offset>` names, as { key: '<topic>-<partition>', offset },
// or null if it is not one (the topic itself may contain dashes).
export function positionOf(id) {
  const m = /^(.+-\d+)-(\d+)$/.exec(String(id || '').trim());
  return m ? { key: m[1], offset: Number(m[2]) } : null;
}

export function createFeed() {
  return { pos: new Map(), recent: new Set(), gap: false };
}

// The cursor to resume after, or '' if nothing of the destination was received yet.
export function cursorOf(feed) {
  return [...feed.pos].map(([key, offset]) => `${key}-${offset}`).join(',');
}

// Whether a MESSAGE with these headers is new to the feed; if it is, the feed moves past it.
// `merging`: the message comes from a catch-up (history or resume) merged with live messages
// held meanwhile, where an offset at or before the cursor is the overlap of the two.
// Returns 'new', 'duplicate', or 'restart' (new, but behind the cursor outside a merge: the
// log started over, e.g. a gateway with the in-process bus was restarted).
export function admit(feed, headers, merging = false) {
  const id = headers['message-id'];
  if (id && feed.recent.has(id)) return 'duplicate';
  const p = positionOf(id);
  let verdict = 'new';
  if (p) {
    const at = feed.pos.get(p.key);
    if (at != null && p.offset <= at) {
      if (merging) return 'duplicate';
      verdict = 'restart';
    }
  }
  if (verdict === 'restart') { feed.pos.clear(); feed.recent.clear(); }
  if (id) {
    feed.recent.add(id);
    if (feed.recent.size > RECENT_IDS) feed.recent.delete(feed.recent.values().next().value);
  }
  // the message's x-cursor is the destination's position as of it; a bare message-id is
  // the position of its one partition
  const parts = String(headers['x-cursor'] || '').split(',').map(positionOf).filter(Boolean);
  if (!parts.length && p) parts.push(p);
  for (const q of parts) feed.pos.set(q.key, q.offset);
  return verdict;
}
