import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { SchemaRegistryGateway } from '../codec/index.js';
import type { Logger } from '../observability/logger.js';
import { SchemaCatalog } from './catalog.js';
import { type Html, html, layout } from './html.js';
import type { ConsoleModel } from './model.js';
import { type Page, type PageContext, PageError, type Redirect } from './pages/context.js';
import { controlsPage, controlsPost } from './pages/controls.js';
import {
  dlqJobPage,
  dlqPage,
  dlqPreviewPage,
  dlqReplayOnePost,
  dlqReplayPost,
  dlqTaskPage,
} from './pages/dlq.js';
import { groupPage } from './pages/group.js';
import { jobsPage } from './pages/jobs.js';
import { outboxPage } from './pages/outbox.js';
import { overviewPage } from './pages/overview.js';
import { schemasPage, subjectPage } from './pages/schemas.js';
import { tiersPage } from './pages/tiers.js';
import { workersPage } from './pages/workers.js';
import { RecordDecoder } from './records.js';
import {
  ConsoleSecurity,
  CredentialThrottle,
  CSRF_COOKIE,
  clientAddress,
  parseCookies,
  SECURITY_HEADERS,
  SESSION_COOKIE,
} from './security.js';

export interface ConsoleServerOptions {
  model: ConsoleModel;
  registry: SchemaRegistryGateway;
  host: string;
  port: number;
  readOnly: boolean;
  /** With a token, every request needs it (bearer, or the cookie the login sets). */
  token?: string | undefined;
  /** How often pages update themselves. @defaultValue 5000 */
  refreshMs?: number;
  logger: Logger;
}

type GetHandler = (ctx: PageContext) => Page | Promise<Page>;
type PostHandler = (ctx: PageContext, form: URLSearchParams) => Redirect | Promise<Redirect>;

const GET: Record<string, GetHandler> = {
  '/': overviewPage,
  '/group': groupPage,
  '/workers': workersPage,
  '/jobs': jobsPage,
  '/dlq': dlqPage,
  '/dlq/job': dlqJobPage,
  '/dlq/preview': dlqPreviewPage,
  '/dlq/task': dlqTaskPage,
  '/tiers': tiersPage,
  '/schemas': schemasPage,
  '/schemas/subject': subjectPage,
  '/controls': controlsPage,
  '/outbox': outboxPage,
};

const POST: Record<string, PostHandler> = {
  '/controls': controlsPost,
  '/dlq/replay': dlqReplayPost,
  '/dlq/replay-one': dlqReplayOnePost,
};

const require = createRequire(import.meta.url);
const ASSETS: Record<string, { file: string; type: string }> = {
  '/assets/console.js': {
    file: fileURLToPath(new URL('./assets/console.js', import.meta.url)),
    type: 'text/javascript; charset=utf-8',
  },
  '/assets/console.css': {
    file: fileURLToPath(new URL('./assets/console.css', import.meta.url)),
    type: 'text/css; charset=utf-8',
  },
  '/assets/uPlot.iife.min.js': {
    file: require.resolve('uplot/dist/uPlot.iife.min.js'),
    type: 'text/javascript; charset=utf-8',
  },
  '/assets/uPlot.min.css': {
    file: require.resolve('uplot/dist/uPlot.min.css'),
    type: 'text/css; charset=utf-8',
  },
};

const MAX_BODY = 64 * 1024;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new PageError(413, 'request body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The console's HTTP server: pages rendered here, assets from the package, no CDN. */
export class ConsoleServer {
  private server: Server | undefined;
  private readonly security: ConsoleSecurity;
  private readonly throttle = new CredentialThrottle();
  private readonly catalog: SchemaCatalog;
  private readonly decoder: RecordDecoder;
  private readonly assetCache = new Map<string, Buffer>();

  constructor(private readonly opts: ConsoleServerOptions) {
    this.security = new ConsoleSecurity({ token: opts.token, host: opts.host });
    this.catalog = new SchemaCatalog(opts.registry);
    this.decoder = new RecordDecoder(this.catalog);
  }

  async listen(): Promise<{ url: string; port: number }> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        this.opts.logger.error({ err: error }, 'console request failed');
        if (!res.headersSent) this.send(res, 500, 'text/plain; charset=utf-8', 'internal error');
        else res.end();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : this.opts.port;
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return { url: `http://${host}:${port}`, port };
  }

  close(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  }

  private send(
    res: ServerResponse,
    status: number,
    type: string,
    body: string | Buffer,
    headers: Record<string, string | string[]> = {},
  ): void {
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': type,
      'cache-control': 'no-store',
      ...headers,
    });
    res.end(body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const method = req.method ?? 'GET';
    if (!this.security.hostAllowed(req)) {
      this.send(
        res,
        403,
        'text/plain; charset=utf-8',
        'this console answers only requests to a loopback host name\n',
      );
      return;
    }
    if (url.pathname === '/favicon.ico') {
      this.send(res, 204, 'text/plain; charset=utf-8', '');
      return;
    }
    const asset = ASSETS[url.pathname];
    if (asset && (method === 'GET' || method === 'HEAD')) {
      let body = this.assetCache.get(url.pathname);
      if (!body) {
        body = await readFile(asset.file);
        this.assetCache.set(url.pathname, body);
      }
      this.send(res, 200, asset.type, body, { 'cache-control': 'public, max-age=3600' });
      return;
    }
    const cookies = parseCookies(req.headers.cookie);
    const setCookies: string[] = [];
    let csrfCookie = cookies.get(CSRF_COOKIE);
    if (!csrfCookie) {
      csrfCookie = this.security.newCsrfCookie();
      setCookies.push(`${CSRF_COOKIE}=${csrfCookie}; Path=/; HttpOnly; SameSite=Strict`);
    }
    const csrf = this.security.csrfToken(csrfCookie);
    if (this.security.tokenRequired && req.headers.authorization !== undefined) {
      // An API client with a bearer token: answered in HTTP terms (401/429), never a login page.
      const address = clientAddress(req);
      const wait = this.throttle.retryAfter(address);
      if (wait > 0) return this.tooManyAttempts(res, wait);
      if (this.security.credentials(req, cookies) === 'wrong') {
        this.throttle.failed(address);
        this.send(res, 401, 'text/plain; charset=utf-8', 'wrong token (Authorization: Bearer)\n', {
          'www-authenticate': 'Bearer realm="strand-console", error="invalid_token"',
        });
        return;
      }
    }
    const authed = this.security.authenticated(req, cookies);
    const ctx: PageContext = {
      model: this.opts.model,
      catalog: this.catalog,
      decoder: this.decoder,
      readOnly: this.opts.readOnly,
      csrf,
      query: url.searchParams,
    };
    const page = (status: number, p: Page, extra: Record<string, string | string[]> = {}) =>
      this.send(res, status, 'text/html; charset=utf-8', this.render(p, ctx, authed).value, {
        ...(setCookies.length ? { 'set-cookie': setCookies } : {}),
        ...extra,
      });
    const errorPage = (status: number, message: string) =>
      page(status, {
        title: `Error ${status}`,
        active: '',
        live: false,
        body: html`<h1>Error ${status}</h1><p class="notice error" data-testid="error">${message}</p>`,
      });

    if (method === 'POST') {
      const form = new URLSearchParams(await readBody(req).catch(() => ''));
      if (url.pathname === '/login')
        return this.login(req, res, form, cookies, setCookies, csrf, page, errorPage);
      if (!authed) return errorPage(401, 'not logged in: send the token (Authorization: Bearer) or log in');
      if (url.pathname === '/logout') {
        if (!this.security.csrfValid(cookies.get(CSRF_COOKIE), form.get('_csrf') ?? undefined))
          return errorPage(403, 'missing or wrong CSRF token');
        this.send(res, 303, 'text/plain; charset=utf-8', '', {
          location: '/login',
          'set-cookie': `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`,
        });
        return;
      }
      if (this.opts.readOnly) return errorPage(403, 'this console is read-only (--read-only)');
      const handler = POST[url.pathname];
      if (!handler) return errorPage(404, 'no such action');
      if (!this.security.sameOrigin(req)) return errorPage(403, 'cross-site request refused');
      // The cookie must come with the request: a forged form from elsewhere has neither.
      if (!this.security.csrfValid(cookies.get(CSRF_COOKIE), form.get('_csrf') ?? undefined))
        return errorPage(403, 'missing or wrong CSRF token; reload the page and try again');
      try {
        const { redirect } = await handler(ctx, form);
        this.send(res, 303, 'text/plain; charset=utf-8', '', { location: redirect });
      } catch (error) {
        if (error instanceof PageError) return errorPage(error.status, error.message);
        this.opts.logger.warn({ err: error, path: url.pathname }, 'console action failed');
        return errorPage(502, (error as Error).message.split('\n')[0] ?? 'action failed');
      }
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') return errorPage(405, 'method not allowed');
    if (url.pathname === '/login')
      return page(200, this.loginPage(url.searchParams.get('next') ?? '/', '', csrf));
    if (!authed) {
      if (req.headers['x-strand-live'] === undefined) {
        const next = `${url.pathname}${url.search}`;
        this.send(res, 303, 'text/plain; charset=utf-8', '', {
          location: `/login?next=${encodeURIComponent(next)}`,
          ...(setCookies.length ? { 'set-cookie': setCookies } : {}),
        });
        return;
      }
      return errorPage(401, 'not logged in');
    }
    const handler = GET[url.pathname];
    if (!handler) return errorPage(404, 'no such page');
    try {
      page(200, await handler(ctx));
    } catch (error) {
      if (error instanceof PageError) return errorPage(error.status, error.message);
      const message = (error as Error).message.split('\n')[0] ?? '';
      if (/does not exist/.test(message)) return errorPage(404, message);
      this.opts.logger.warn({ err: error, path: url.pathname }, 'console page failed');
      return errorPage(
        502,
        `could not read from Kafka or the registry: ${(error as Error).message.split('\n')[0]}`,
      );
    }
  }

  private login(
    req: IncomingMessage,
    res: ServerResponse,
    form: URLSearchParams,
    cookies: Map<string, string>,
    setCookies: string[],
    csrf: string,
    page: (status: number, p: Page, extra?: Record<string, string>) => void,
    errorPage: (status: number, message: string) => void,
  ): void {
    if (
      !this.security.sameOrigin(req) ||
      !this.security.csrfValid(cookies.get(CSRF_COOKIE), form.get('_csrf') ?? undefined)
    ) {
      errorPage(403, 'missing or wrong CSRF token; reload the login page');
      return;
    }
    const next = form.get('next') ?? '/';
    const safeNext = next.startsWith('/') && !next.startsWith('//') ? next : '/';
    const address = clientAddress(req);
    const wait = this.throttle.retryAfter(address);
    if (wait > 0) {
      page(429, this.loginPage(safeNext, `Too many wrong tokens: try again in ${wait} s.`, csrf), {
        'retry-after': String(wait),
      });
      return;
    }
    const session = this.security.sessionFor(form.get('token') ?? '');
    if (!session) {
      this.throttle.failed(address);
      page(401, this.loginPage(safeNext, 'Wrong token.', csrf));
      return;
    }
    setCookies.push(`${SESSION_COOKIE}=${session}; Path=/; HttpOnly; SameSite=Strict`);
    this.send(res, 303, 'text/plain; charset=utf-8', '', { location: safeNext, 'set-cookie': setCookies });
  }

  private tooManyAttempts(res: ServerResponse, seconds: number): void {
    this.send(res, 429, 'text/plain; charset=utf-8', `too many wrong tokens: try again in ${seconds} s\n`, {
      'retry-after': String(seconds),
    });
  }

  private loginPage(next: string, error: string, csrf: string): Page {
    return {
      title: 'Log in',
      active: '',
      live: false,
      body: html`<section class="card login">
<h1>Log in</h1>
<p class="hint">This console was started with <code>--auth-token-file</code>: paste the token from that file.</p>
${error ? html`<p class="notice error">${error}</p>` : ''}
<form method="post" action="/login" data-testid="login-form">
<input type="hidden" name="_csrf" value="${csrf}">
<input type="hidden" name="next" value="${next}">
<label>token <input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button class="btn primary">Log in</button>
</form>
</section>`,
    };
  }

  private render(p: Page, ctx: PageContext, authed: boolean): Html {
    return layout({
      title: p.title,
      active: p.active,
      readOnly: ctx.readOnly,
      loggedIn: authed && this.security.tokenRequired,
      // Before the token, nothing of the cluster: no brokers, no nav, no mode.
      anonymous: !authed,
      csrf: ctx.csrf,
      cluster: this.opts.model.connection.brokers.join(', '),
      body: p.body,
      refreshMs: p.live === false || !authed ? 0 : (this.opts.refreshMs ?? 5000),
    });
  }
}
