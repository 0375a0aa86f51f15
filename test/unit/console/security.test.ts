import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { exposureProblem } from '../../../src/cli/console.js';
import { escapeHtml, html } from '../../../src/console/html.js';
import { ConsoleSecurity, isLoopback } from '../../../src/console/security.js';

const req = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

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
