/**
 * A main-area view of one endpoint that re-reads its content on an interval while its
 * "Follow" box is checked and it is visible: the log view and the recent-requests view.
 *
 * The interval is a `@lumino/polling` `Poll`: it stands by while the view is hidden, not
 * following, paused (the subclass's `stopped()`), or the browser tab is hidden, and reads
 * the interval setting before every tick, so a changed setting applies at the next one.
 * What both views share lives here too: the status note, reading with its error handling
 * (a 404 means the endpoint is gone), and following the model's deletions.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { h, setText } from './dom';
import { APIError } from './handler';
import { IDeletion, IEndpointsModel } from './tokens';

export interface IFollowingViewOptions {
  /** The endpoint shown. */
  name: string;
  model: IEndpointsModel;
  trans: TranslationBundle;
  /** Milliseconds between reads while following; read before every tick. */
  interval: () => number;
}

export abstract class FollowingView extends Widget {
  readonly endpoint: string;
  /** The "Follow" checkbox; the subclass places it (with a label) in its bar. */
  protected readonly follow: HTMLInputElement;
  /** One line on the last read (an error, or that the endpoint is gone); placed by the
   * subclass. */
  protected readonly status = h('span', {
    class: 'eb-FieldNote',
    role: 'status'
  });
  private readonly _base: IFollowingViewOptions;
  private readonly _poll: Poll;
  private _loading: Promise<void> | null = null;
  private _gone = false;

  constructor(followId: string, options: IFollowingViewOptions) {
    super();
    this.endpoint = options.name;
    this._base = options;
    this.follow = h('input', { type: 'checkbox', checked: true, id: followId });
    this.follow.addEventListener('change', () => this.schedule());
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: { interval: options.interval(), backoff: false },
      name: '@edgebook/labextension:follow',
      standby: () => !this._following() || !this.isVisible || 'when-hidden'
    });
    options.model.deleting.connect(this._onDeleting, this);
    options.model.removed.connect(this._onRemoved, this);
  }

  /** Reads and shows the content (one read at a time). */
  load(): Promise<void> {
    if (!this._loading) {
      this._loading = this._read().finally(() => {
        this._loading = null;
      });
    }
    return this._loading;
  }

  /** The endpoint is gone: keep what is shown, stop following for good. */
  markGone(): void {
    this._gone = true;
    this.follow.checked = false;
    this.follow.disabled = true;
    this.schedule();
    setText(
      this.status,
      this._base.trans.__('%1 no longer exists', this.endpoint)
    );
  }

  /** The read in flight, if any. */
  protected get reading(): Promise<void> | null {
    return this._loading;
  }

  /** Whether the endpoint is known to be gone. */
  protected get gone(): boolean {
    return this._gone;
  }

  /** Fetches the content and shows it; a rejection is reported in the status note. */
  protected abstract fetchAndShow(): Promise<void>;

  /** The status note for a read that failed with `message`. */
  protected abstract failedRead(message: string): string;

  /** True while the view must not read (paused, or its endpoint is gone). */
  protected abstract stopped(): boolean;

  /** The model says a deletion of this view's endpoint is `deletion.phase`; by default
   * only its end matters. */
  protected onDeleting(deletion: IDeletion): void {
    if (deletion.phase === 'gone') {
      this.markGone();
    }
  }

  /** Call after what `stopped()` or the Follow box says changed: reads now if following
   * again; otherwise the poll stands by from its next tick. */
  protected schedule(): void {
    if (this._following()) {
      void this._poll.refresh();
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.load();
    void this._poll.start();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._base.model.deleting.disconnect(this._onDeleting, this);
    this._base.model.removed.disconnect(this._onRemoved, this);
    this._poll.dispose();
    super.dispose();
  }

  private async _read(): Promise<void> {
    if (this.stopped()) {
      return;
    }
    try {
      await this.fetchAndShow();
      setText(this.status, '');
    } catch (error) {
      if (error instanceof APIError && error.status === 404) {
        this.markGone();
        return;
      }
      setText(this.status, this.failedRead((error as Error).message));
    }
  }

  private _following(): boolean {
    return (
      this.follow.checked &&
      !this.stopped() &&
      !this.isDisposed &&
      this.isAttached
    );
  }

  private async _tick(): Promise<void> {
    const interval = this._base.interval();
    if (interval !== this._poll.frequency.interval) {
      this._poll.frequency = { ...this._poll.frequency, interval };
    }
    await this.load();
  }

  private _onDeleting(_: IEndpointsModel, deletion: IDeletion): void {
    if (deletion.endpoint === this.endpoint) {
      this.onDeleting(deletion);
    }
  }

  private _onRemoved(_: IEndpointsModel, name: string): void {
    if (name === this.endpoint) {
      this.markGone();
    }
  }
}
