import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { exposureProblem } from '../../../src/cli/console.js';
import { escapeHtml, html } from '../../../src/console/html.js';
import {
  ConsoleSecurity,
  CredentialThrottle,
  clientAddress,
  isLoopback,
} from '../../../src/console/security.js';

const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
const from = (remoteAddress: string) =>
  ({ headers: {}, socket: { remoteAddress } }) as unknown as IncomingMessage;

describe('console html', () => {
  it('escapes every interpolated value, in content and attributes', () => {
    const key = `<img src=x onerror="alert('x')">`;
    expect(html`<td title="${key}">${key}</td>`.value).toBe(
      '<td title="&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;">&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;</td>',
    );
    expect(html`${['<b>', html`<i>ok</i>`]}`.value).toBe('&lt;b&gt;<i>ok</i>');
    expect(escapeHtml('a & b `c`')).toBe('a &amp; b &#96;c&#96;');
  });
});

describe('console security', () => {
  it('refuses a non-loopback host without a token or --read-only', () => {
    expect(exposureProblem({ host: '127.0.0.1' })).toBeUndefined();
    expect(exposureProblem({ host: '::1' })).toBeUndefined();
    expect(exposureProblem({ host: '0.0.0.0' })).toMatch(/without --auth-token-file or --read-only/);
    expect(exposureProblem({ host: '0.0.0.0', readOnly: true })).toBeUndefined();
    expect(exposureProblem({ host: '10.0.0.5', authTokenFile: 'f' })).toBeUndefined();
    expect(isLoopback('localhost') && isLoopback('[::1]') && !isLoopback('127.example.com')).toBe(true);
  });

  it('checks the token, the CSRF token, the origin and (without a token) the Host header', () => {
    const open = new ConsoleSecurity({ host: '127.0.0.1' });
    expect(open.hostAllowed(req({ host: '127.0.0.1:9400' }))).toBe(true);
    expect(open.hostAllowed(req({ host: 'rebound.example:9400' }))).toBe(false);
    const cookie = open.newCsrfCookie();
    expect(open.csrfValid(cookie, open.csrfToken(cookie))).toBe(true);
    expect(open.csrfValid(cookie, open.csrfToken(open.newCsrfCookie()))).toBe(false);
    expect(open.csrfValid(undefined, open.csrfToken(cookie))).toBe(false);
    expect(open.sameOrigin(req({ 'sec-fetch-site': 'cross-site', host: 'h' }))).toBe(false);
    expect(open.sameOrigin(req({ origin: 'https://evil.example', host: '127.0.0.1:9400' }))).toBe(false);
    expect(open.sameOrigin(req({ origin: 'http://127.0.0.1:9400', host: '127.0.0.1:9400' }))).toBe(true);

    const locked = new ConsoleSecurity({ host: '0.0.0.0', token: 'a-long-enough-token' });
    expect(locked.authenticated(req({}), new Map())).toBe(false);
    expect(locked.authenticated(req({ authorization: 'Bearer a-long-enough-token' }), new Map())).toBe(true);
    const session = locked.sessionFor('a-long-enough-token')!;
    expect(session).not.toContain('a-long-enough-token');
    expect(locked.sessionFor('wrong')).toBeUndefined();
    expect(locked.authenticated(req({}), new Map([['strand_session', session]]))).toBe(true);
  });
});

describe('console credentials and their throttle', () => {
  it('tells a wrong bearer token (401 for API clients) from no credential (the login page)', () => {
    const locked = new ConsoleSecurity({ host: '0.0.0.0', token: 'a-long-enough-token' });
    expect(locked.credentials(req({}), new Map())).toBe('none');
    expect(locked.credentials(req({ authorization: 'Bearer a-long-enough-token' }), new Map())).toBe('ok');
    expect(locked.credentials(req({ authorization: 'bearer  a-long-enough-token ' }), new Map())).toBe('ok');
    expect(locked.credentials(req({ authorization: 'Bearer nope' }), new Map())).toBe('wrong');
    expect(locked.credentials(req({ authorization: 'Basic YTpi' }), new Map())).toBe('wrong');
    // A wrong header is not rescued by a valid cookie: the client said who it is.
    const session = locked.sessionFor('a-long-enough-token')!;
    expect(
      locked.credentials(req({ authorization: 'Bearer nope' }), new Map([['strand_session', session]])),
    ).toBe('wrong');
    expect(
      new ConsoleSecurity({ host: '127.0.0.1' }).credentials(req({ authorization: 'Bearer x' }), new Map()),
    ).toBe('ok');
  });

  it('lets 5 wrong tokens through per address, then one per 10 s (token bucket)', () => {
    let now = 0;
    const t = new CredentialThrottle({ now: () => now });
    for (let i = 0; i < 5; i++) {
      expect(t.retryAfter('10.0.0.1')).toBe(0);
      t.failed('10.0.0.1');
    }
    expect(t.retryAfter('10.0.0.1')).toBe(10);
    expect(t.retryAfter('10.0.0.2')).toBe(0);
    now = 4_000;
    expect(t.retryAfter('10.0.0.1')).toBe(6);
    now = 10_000;
    expect(t.retryAfter('10.0.0.1')).toBe(0);
    t.failed('10.0.0.1');
    expect(t.retryAfter('10.0.0.1')).toBe(10);
    // Refilled to the full burst after 50 s of quiet.
    now = 60_000;
    for (let i = 0; i < 5; i++) {
      expect(t.retryAfter('10.0.0.1')).toBe(0);
      t.failed('10.0.0.1');
    }
    expect(t.retryAfter('10.0.0.1')).toBeGreaterThan(0);
  });

  it('remembers a bounded number of addresses', () => {
    const t = new CredentialThrottle({ burst: 1, maxAddresses: 3, now: () => 0 });
    for (const a of ['a', 'b', 'c', 'd']) t.failed(a);
    expect(['a', 'b', 'c', 'd'].map((a) => t.retryAfter(a))).toEqual([0, 10, 10, 10]);
  });

  it('counts IPv4 clients by address and IPv6 clients by /64', () => {
    expect(clientAddress(from('::ffff:192.0.2.7'))).toBe('192.0.2.7');
    expect(clientAddress(from('127.0.0.1'))).toBe('127.0.0.1');
    expect(clientAddress(from('2001:db8:0:1::5'))).toBe('2001:db8:0:1::/64');
    expect(clientAddress(from('2001:0db8:0000:0001:aaaa:bbbb:cccc:dddd'))).toBe('2001:db8:0:1::/64');
    expect(clientAddress(from('::1'))).toBe('0:0:0:0::/64');
  });
});
