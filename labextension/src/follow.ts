/**
 * A main-area view that re-reads its content on an interval while its "Follow" box is
 * checked and it is visible: the log view and the recent-requests view.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h } from './dom';

export abstract class FollowingView extends Widget {
  /** The "Follow" checkbox; the subclass places it (with a label) in its bar. */
  protected readonly follow: HTMLInputElement;
  private readonly _interval: () => number;
  private _timer: number | null = null;
  private _loading: Promise<void> | null = null;

  /** `interval` (ms between reads) is read before every wait, so settings apply live. */
  constructor(followId: string, interval: () => number) {
    super();
    this._interval = interval;
    this.follow = h('input', { type: 'checkbox', checked: true, id: followId });
    this.follow.addEventListener('change', () => this.schedule());
  }

  /** Reads and shows the content (one read at a time). */
  load(): Promise<void> {
    if (!this._loading) {
      this._loading = this.read().finally(() => {
        this._loading = null;
      });
    }
    return this._loading;
  }

  /** The read in flight, if any. */
  protected get reading(): Promise<void> | null {
    return this._loading;
  }

  /** One read of the content. */
  protected abstract read(): Promise<void>;

  /** True while the view must not read (paused, or its endpoint is gone). */
  protected abstract stopped(): boolean;

  /** (Re)starts the wait for the next read, or stops waiting when not following. */
  protected schedule(): void {
    this.clearTimer();
    if (
      !this.follow.checked ||
      this.stopped() ||
      this.isDisposed ||
      !this.isAttached
    ) {
      return;
    }
    this._timer = window.setTimeout(async () => {
      this._timer = null;
      if (this.isVisible) {
        await this.load();
      }
      this.schedule();
    }, this._interval());
  }

  protected clearTimer(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.load();
    this.schedule();
  }

  protected onBeforeDetach(msg: Message): void {
    this.clearTimer();
    super.onBeforeDetach(msg);
  }

  dispose(): void {
    this.clearTimer();
    super.dispose();
  }
}
