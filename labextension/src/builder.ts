/**
 * The request builder: compose a request, send it through the data-plane proxy, read the
 * response (status, headers, pretty body, latency), and pick earlier requests from history.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { h, setText, StatusRegion } from './dom';
import { APIError, sendThroughProxy } from './handler';
import {
  checkJson,
  contentTypeOf,
  formatMs,
  IHistoryEntry,
  parseHeaders,
  pathWithQuery,
  prettyBody,
  pushHistory,
  sensitiveHeaders
} from './model';
import { IProxyResponse } from './tokens';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

let nextId = 0;

/** What the builder can be filled with (from an endpoint row or a history entry). */
export interface IRequestDraft {
  method: string;
  path: string;
  query?: string;
  headers?: string;
  body?: string;
}

export interface IRequestBuilderOptions {
  trans: TranslationBundle;
  /** The locale numbers are written in (the user's when undefined). */
  locale?: string;
  /** How many sent requests the history keeps; read on every send. */
  historyLimit?: () => number;
  /** Called after each response (the endpoint's metrics have changed). */
  onSent?: () => void;
  /** Where responses are announced (the sidebar's one status region). */
  status?: StatusRegion;
}

export class RequestBuilder extends Widget {
  private readonly _method: HTMLSelectElement;
  private readonly _path: HTMLInputElement;
  private readonly _query: HTMLInputElement;
  private readonly _headers: HTMLTextAreaElement;
  private readonly _body: HTMLTextAreaElement;
  // Field notes are tied to their fields with aria-describedby, not announced on each key.
  private readonly _bodyCheck = h('div', { class: 'eb-FieldNote' });
  private readonly _headersCheck = h('div', { class: 'eb-FieldNote' });
  private readonly _headersWarning = h('div', {
    class: 'eb-FieldNote eb-Warning'
  });
  private readonly _trans: TranslationBundle;
  private readonly _locale: string | undefined;
  private readonly _historyLimit: () => number;
  private readonly _onSent: () => void;
  private readonly _send: HTMLButtonElement;
  private readonly _format: HTMLButtonElement;
  private readonly _result = h('div', { class: 'eb-Response' });
  private readonly _status: StatusRegion | null;
  private readonly _historyList = h('ol', { class: 'eb-History' });
  private _history: IHistoryEntry[] = [];
  private _sending = false;

  constructor(options: IRequestBuilderOptions) {
    super();
    const trans = (this._trans = options.trans);
    this._locale = options.locale;
    this._historyLimit = options.historyLimit ?? (() => 20);
    this._onSent = options.onSent ?? (() => undefined);
    this._status = options.status ?? null;
    this.addClass('eb-Builder');
    this.title.label = trans.__('Request builder');
    const id = `eb-builder-${++nextId}`;
    this._method = h('select', {
      id: `${id}-method`,
      class: 'eb-Input eb-MethodSelect'
    });
    for (const method of METHODS) {
      this._method.append(h('option', { value: method }, method));
    }
    this._path = h('input', {
      id: `${id}-path`,
      class: 'eb-Input eb-PathInput',
      type: 'text',
      value: '/',
      spellcheck: 'false',
      placeholder: '/hello'
    });
    this._query = h('input', {
      id: `${id}-query`,
      class: 'eb-Input',
      type: 'text',
      spellcheck: 'false',
      placeholder: 'name=value&other=1'
    });
    this._headers = h('textarea', {
      id: `${id}-headers`,
      class: 'eb-Input eb-Code',
      rows: '2',
      spellcheck: 'false',
      placeholder: 'Content-Type: text/csv'
    });
    this._body = h('textarea', {
      id: `${id}-body`,
      class: 'eb-Input eb-Code',
      rows: '4',
      spellcheck: 'false',
      placeholder: 'name,value',
      'aria-describedby': `${id}-body-check`
    });
    this._bodyCheck.id = `${id}-body-check`;
    this._headersCheck.id = `${id}-headers-check`;
    this._headersWarning.id = `${id}-headers-warning`;
    this._headers.setAttribute(
      'aria-describedby',
      `${this._headersCheck.id} ${this._headersWarning.id}`
    );
    this._send = h(
      'button',
      { type: 'submit', class: 'eb-Button eb-Primary' },
      trans.__('Send')
    );
    this._format = h(
      'button',
      { type: 'button', class: 'eb-Button' },
      trans.__('Format JSON')
    );
    this._format.addEventListener('click', () => this.formatBody());
    this._body.addEventListener('input', () => this.validate());
    this._headers.addEventListener('input', () => this.validate());
    const form = h(
      'form',
      { class: 'eb-BuilderForm', 'aria-label': trans.__('Request builder') },
      h(
        'div',
        { class: 'eb-RequestLine' },
        h(
          'label',
          { class: 'eb-VisuallyHidden', for: this._method.id },
          trans.__('Method')
        ),
        this._method,
        h(
          'label',
          { class: 'eb-VisuallyHidden', for: this._path.id },
          trans.__('Path')
        ),
        this._path
      ),
      h('label', { class: 'eb-Label', for: this._query.id }, trans.__('Query')),
      this._query,
      h(
        'label',
        { class: 'eb-Label', for: this._headers.id },
        trans.__('Headers (one per line, sent exactly as typed)')
      ),
      this._headers,
      this._headersCheck,
      this._headersWarning,
      h('label', { class: 'eb-Label', for: this._body.id }, trans.__('Body')),
      this._body,
      this._bodyCheck,
      h('div', { class: 'eb-FormButtons' }, this._send, this._format)
    );
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.send();
    });
    form.addEventListener('keydown', event => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        void this.send();
      }
    });
    const history = h(
      'details',
      { class: 'eb-HistoryBox' },
      h('summary', {}, trans.__('History')),
      this._historyList
    );
    this._historyList.setAttribute('aria-label', trans.__('Sent requests'));
    this.node.append(form, this._result, history);
    this._result.hidden = true;
    this.validate();
  }

  /** The sent requests, newest first. */
  get history(): readonly IHistoryEntry[] {
    return this._history;
  }

  /** Fills the form with `draft` and puts the focus on the path. */
  load(draft: IRequestDraft): void {
    this._method.value = METHODS.includes(draft.method.toUpperCase())
      ? draft.method.toUpperCase()
      : 'GET';
    this._path.value = draft.path;
    this._query.value = draft.query ?? '';
    this._headers.value = draft.headers ?? '';
    this._body.value = draft.body ?? '';
    this.validate();
    this._path.focus();
    const brace = draft.path.indexOf('{');
    if (brace >= 0) {
      this._path.setSelectionRange(brace, draft.path.indexOf('}', brace) + 1);
    }
  }

  /**
   * Checks the headers, and the body as JSON when the typed Content-Type is JSON; warns
   * about credentials. Returns whether the request can be sent.
   */
  validate(): boolean {
    const trans = this._trans;
    const headers = parseHeaders(this._headers.value);
    setText(
      this._headersCheck,
      headers.errors
        .map(e => trans.__('line %1: expected "Name: value"', String(e.line)))
        .join('; ')
    );
    this._headers.setAttribute(
      'aria-invalid',
      headers.errors.length ? 'true' : 'false'
    );
    const sensitive = sensitiveHeaders(headers.headers);
    setText(
      this._headersWarning,
      sensitive.length
        ? trans.__(
            '%1 goes to your endpoint only (never Jupyter\u2019s own credentials), and stays in this panel\u2019s history and in copied curl commands.',
            sensitive.join(', ')
          )
        : ''
    );
    this._headersWarning.hidden = !sensitive.length;
    const isJson = /json/i.test(contentTypeOf(headers.headers) ?? '');
    const json = isJson
      ? checkJson(this._body.value)
      : { ok: true, message: null };
    setText(
      this._bodyCheck,
      json.ok ? '' : trans.__('Invalid JSON: %1', json.message ?? '')
    );
    this._body.setAttribute('aria-invalid', json.ok ? 'false' : 'true');
    const ok = json.ok && headers.errors.length === 0;
    this._send.disabled = !ok || this._sending;
    this._format.hidden = !isJson;
    this._format.disabled = !json.ok || !this._body.value.trim();
    return ok;
  }

  formatBody(): void {
    if (checkJson(this._body.value).ok && this._body.value.trim()) {
      this._body.value = JSON.stringify(JSON.parse(this._body.value), null, 2);
    }
  }

  /** Sends the request through the proxy, with exactly the typed headers, and shows the response. */
  async send(): Promise<void> {
    if (this._sending || !this.validate()) {
      return;
    }
    const trans = this._trans;
    const method = this._method.value;
    const target = pathWithQuery(this._path.value, this._query.value);
    const headers = parseHeaders(this._headers.value).headers;
    const body = this._body.value.length ? this._body.value : null;
    this._sending = true;
    this.validate();
    setText(this._send, trans.__('Sending\u2026'));
    try {
      const response = await sendThroughProxy(method, target, headers, body);
      this.showResponse(response);
      this._history = pushHistory(
        this._history,
        {
          method,
          path: this._path.value,
          query: this._query.value,
          headers: this._headers.value,
          body: this._body.value,
          status: response.status,
          latencyMs: response.latencyMs,
          at: Date.now()
        },
        this._historyLimit()
      );
      this.renderHistory();
      this._onSent();
    } catch (error) {
      this.showFailure(
        error instanceof APIError ? error.message : String(error)
      );
    } finally {
      this._sending = false;
      setText(this._send, trans.__('Send'));
      this.validate();
    }
  }

  private showResponse(response: IProxyResponse): void {
    this._status?.announce(
      this._trans.__(
        'Response %1 in %2',
        `${response.status} ${response.statusText}`.trim(),
        formatMs(response.latencyMs, this._locale)
      )
    );
    const contentType =
      response.headers.find(
        ([name]) => name.toLowerCase() === 'content-type'
      )?.[1] ?? null;
    const tone =
      response.status < 300 ? 'ok' : response.status < 500 ? 'warn' : 'error';
    const headerList = h('dl', { class: 'eb-HeaderList' });
    for (const [name, value] of response.headers) {
      headerList.append(h('dt', {}, name), h('dd', {}, value));
    }
    this._result.replaceChildren(
      h(
        'div',
        { class: 'eb-ResponseLine' },
        h(
          'span',
          {
            class: 'eb-Status',
            'data-tone': tone,
            'data-status': String(response.status)
          },
          `${response.status} ${response.statusText}`.trim()
        ),
        h(
          'span',
          {
            class: 'eb-Latency',
            title: this._trans.__('Round trip through Jupyter')
          },
          formatMs(response.latencyMs, this._locale)
        )
      ),
      response.dropped.length
        ? h(
            'div',
            { class: 'eb-FieldNote eb-Warning eb-Dropped' },
            this._trans.__(
              'The proxy did not forward: %1',
              response.dropped.join(', ')
            )
          )
        : '',
      h(
        'details',
        { class: 'eb-ResponseHeaders' },
        h(
          'summary',
          {},
          this._trans.__('Headers (%1)', String(response.headers.length))
        ),
        headerList
      ),
      h(
        'pre',
        {
          class: 'eb-ResponseBody',
          tabindex: '0',
          'aria-label': this._trans.__('Response body')
        },
        prettyBody(response.body, contentType) || this._trans.__('(empty body)')
      )
    );
    this._result.hidden = false;
  }

  private showFailure(message: string): void {
    this._status?.announce(this._trans.__('The request failed: %1', message));
    this._result.replaceChildren(
      h(
        'div',
        { class: 'eb-ResponseLine' },
        h(
          'span',
          { class: 'eb-Status', 'data-tone': 'error' },
          this._trans.__('Failed')
        )
      ),
      h('pre', { class: 'eb-ResponseBody' }, message)
    );
    this._result.hidden = false;
  }

  private renderHistory(): void {
    this._historyList.replaceChildren(
      ...this._history.map(entry => {
        const label = `${entry.method} ${pathWithQuery(entry.path, entry.query)}`;
        const button = h(
          'button',
          {
            type: 'button',
            class: 'eb-HistoryItem',
            title: this._trans.__('Load %1', label)
          },
          h(
            'span',
            { class: 'eb-Method', 'data-method': entry.method },
            entry.method
          ),
          h(
            'span',
            { class: 'eb-Path' },
            pathWithQuery(entry.path, entry.query)
          ),
          h(
            'span',
            {
              class: 'eb-Status',
              'data-tone':
                entry.status < 300
                  ? 'ok'
                  : entry.status < 500
                    ? 'warn'
                    : 'error'
            },
            String(entry.status)
          ),
          h(
            'span',
            { class: 'eb-Latency' },
            formatMs(entry.latencyMs, this._locale)
          )
        );
        button.addEventListener('click', () => this.load(entry));
        return h('li', {}, button);
      })
    );
  }
}
