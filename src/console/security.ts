import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';

export const SESSION_COOKIE = 'strand_session';
export const CSRF_COOKIE = 'strand_csrf';

function digest(key: string | Buffer, text: string): string {
  return createHmac('sha256', key).update(text).digest('base64url');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `127.0.0.1`, `::1`, `localhost` and the rest of 127.0.0.0/8. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), decodeURIComponent(part.slice(i + 1).trim()));
  }
  return out;
}

/**
 * Who may use the console, and the CSRF check of every POST.
 *
 * - With a token, each request carries it (`Authorization: Bearer`) or the session cookie that
 *   the login sets (HttpOnly, SameSite=Strict; its value is derived from the token, never the token).
 * - Without a token the console only answers requests addressed to a loopback name (the Host
 *   header), so a web page cannot reach it through DNS rebinding.
 * - A POST needs the `_csrf` field matching the browser's CSRF cookie (an HMAC of it with a key of
 *   this process), and is refused when its Origin is another site.
 */
export class ConsoleSecurity {
  private readonly key = randomBytes(32);
  private readonly session: string | undefined;

  constructor(private readonly opts: { token?: string | undefined; host: string }) {
    this.session = opts.token ? digest(opts.token, 'strand-console-session') : undefined;
  }

  get tokenRequired(): boolean {
    return this.opts.token !== undefined;
  }

  /** The session cookie value a correct login gets. */
  sessionFor(token: string): string | undefined {
    return this.opts.token !== undefined && same(token, this.opts.token) ? this.session : undefined;
  }

  authenticated(req: IncomingMessage, cookies: Map<string, string>): boolean {
    return this.credentials(req, cookies) === 'ok';
  }

  /**
   * `ok`; `none` (no credential: a browser is sent to the login page); or `wrong` when the request
   * carries an Authorization header with anything but the token (an API client: 401, not a page).
   */
  credentials(req: IncomingMessage, cookies: Map<string, string>): 'ok' | 'none' | 'wrong' {
    if (this.opts.token === undefined || this.session === undefined) return 'ok';
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      return m?.[1] !== undefined && same(m[1], this.opts.token) ? 'ok' : 'wrong';
    }
    const cookie = cookies.get(SESSION_COOKIE);
    return cookie !== undefined && same(cookie, this.session) ? 'ok' : 'none';
  }

  /** False for a request a browser was tricked into addressing to this loopback console. */
  hostAllowed(req: IncomingMessage): boolean {
    if (this.tokenRequired || !isLoopback(this.opts.host)) return true;
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    return isLoopback(host);
  }

  /** A new CSRF cookie value (random per browser). */
  newCsrfCookie(): string {
    return randomBytes(24).toString('base64url');
  }

  /** The token forms carry for the browser holding `cookie`. */
  csrfToken(cookie: string): string {
    return digest(this.key, `csrf:${cookie}`);
  }

  csrfValid(cookie: string | undefined, token: string | undefined): boolean {
    return cookie !== undefined && token !== undefined && same(token, this.csrfToken(cookie));
  }

  /**
   * False when the browser says the POST comes from another site: `Sec-Fetch-Site` where the
   * browser sends it, else the Origin (clients that send neither, like curl, pass on to the token).
   */
  sameOrigin(req: IncomingMessage): boolean {
    const site = req.headers['sec-fetch-site'];
    if (typeof site === 'string') return site === 'same-origin' || site === 'none';
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    try {
      return new URL(origin).host === req.headers.host;
    } catch {
      return false;
    }
  }
}

/**
 * The address a credential attempt is counted against: IPv4 as is, IPv6 by its /64 (one host
 * usually holds a whole /64, so counting single addresses would give it billions of buckets).
 * Behind a reverse proxy every client shares the proxy's address: `X-Forwarded-For` is not
 * trusted, because anyone can send it.
 */
export function clientAddress(req: IncomingMessage): string {
  const raw = (req.socket?.remoteAddress ?? 'unknown').replace(/^::ffff:(?=\d+\.)/, '');
  if (!isIPv6(raw)) return raw;
  const [head = '', tail = ''] = raw.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

export interface ThrottleOptions {
  /** Wrong attempts an address may make in a row. @defaultValue 5 */
  burst?: number;
  /** One more attempt is allowed after this long. @defaultValue 10000 */
  refillMs?: number;
  /** Addresses remembered at most (the oldest are forgotten first). @defaultValue 10000 */
  maxAddresses?: number;
  now?: () => number;
}

/**
 * Throttles token guesses (the login form and `Authorization: Bearer`): a token bucket per client
 * address that each wrong token empties by one and that refills by one every `refillMs`. With the
 * bucket empty, no token from that address is even checked (429 with Retry-After) until it refills,
 * so guessing runs at 6 a minute per address however fast the requests come. Right tokens and
 * session cookies take nothing from the bucket.
 */
export class CredentialThrottle {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(opts: ThrottleOptions = {}) {
    this.burst = opts.burst ?? 5;
    this.refillMs = opts.refillMs ?? 10_000;
    this.maxAddresses = opts.maxAddresses ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  private level(address: string): number {
    const b = this.buckets.get(address);
    if (!b) return this.burst;
    const tokens = Math.min(this.burst, b.tokens + (this.now() - b.at) / this.refillMs);
    if (tokens >= this.burst) this.buckets.delete(address);
    return tokens;
  }

  /** Seconds until `address` may try a token again; 0 when it may now. */
  retryAfter(address: string): number {
    const tokens = this.level(address);
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) * this.refillMs) / 1000);
  }

  /** Counts a wrong token from `address`. */
  failed(address: string): void {
    const tokens = this.level(address);
    this.buckets.delete(address);
    this.buckets.set(address, { tokens: Math.max(0, tokens - 1), at: this.now() });
    if (this.buckets.size > this.maxAddresses) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
  }
}

/** Headers on every answer: a strict CSP (no inline script or style), no framing, no sniffing. */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on form posts.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
};
