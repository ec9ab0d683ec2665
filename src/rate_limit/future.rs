//! The response future: the inner service's future, a made answer, or,
//! for a store that can't answer inside `call`, the wait for the store
//! before the inner service is called.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::ResponseBody;
use super::fields::{Fields, too_many};
use super::key::Key;
use super::quota::Decision;
use super::service::{Shared, fail_open, traced};
use super::store::RateLimitStore;

/// The slow path's state, boxed so the fast path's future stays small.
struct Checking<St: RateLimitStore, S, R> {
    checks: Vec<St::Future>,
    results: Vec<Decision>,
    peeking: bool,
    keys: Vec<(u16, Key)>,
    cost: u32,
    next: Option<(S, Request<R>)>,
    shared: Arc<Shared<St>>,
}

pin_project! {
    #[project = StateProj]
    enum State<F, St: RateLimitStore, S, R> {
        Checking { checking: Box<Checking<St, S, R>> },
        Inner { #[pin] fut: F, fields: Option<Fields> },
        // Boxed: a rejection is rare, and the future stays small.
        Rejected { res: Option<Box<Response<ResponseBody<()>>>> },
        Done,
    }
}

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<F, St: RateLimitStore, S, R> {
        #[pin]
        state: State<F, St, S, R>,
    }
}

impl<F, St: RateLimitStore, S, R> std::fmt::Debug for ResponseFuture<F, St, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, St: RateLimitStore, S, R> ResponseFuture<F, St, S, R> {
    pub(super) fn inner(fut: F, fields: Fields) -> Self {
        Self {
            state: State::Inner {
                fut,
                fields: Some(fields),
            },
        }
    }

    pub(super) fn rejected(res: Box<Response<ResponseBody<()>>>) -> Self {
        Self {
            state: State::Rejected { res: Some(res) },
        }
    }
}

impl<F, St, S, R, B, E> Future for ResponseFuture<F, St, S, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    St: RateLimitStore,
    St::Future: Unpin,
    S: Service<Request<R>, Response = Response<B>, Error = E, Future = F>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { checking } => {
                    let Checking {
                        checks,
                        results,
                        peeking,
                        keys,
                        cost,
                        next,
                        shared,
                    } = &mut **checking;
                    let (config, stats, store) = (&shared.config, &shared.stats, &shared.store);
                    // Answers in order; a store that fails lets the request
                    // through (fail open).
                    while results.len() < checks.len() {
                        let i = results.len();
                        let answer = ready!(Pin::new(&mut checks[i]).poll(cx));
                        results.push(answer.unwrap_or_else(|_| {
                            fail_open(&config.policies[usize::from(keys[i].0)])
                        }));
                    }
                    let denied = results
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| !d.allowed)
                        .max_by_key(|(_, d)| d.retry_after)
                        .map(|(i, d)| (i, *d));
                    if denied.is_none() && *peeking {
                        // Every policy allows it: now count it in all.
                        *checks = keys
                            .iter()
                            .map(|(i, k)| store.check(&config.policies[usize::from(*i)], k, *cost))
                            .collect();
                        results.clear();
                        *peeking = false;
                        continue;
                    }
                    // A refused request counts as limited in the policies
                    // that refused it, and in no other.
                    for ((p, k), d) in keys.iter().zip(results.iter()) {
                        if !d.allowed || denied.is_none() {
                            stats.count(*p, k, d.allowed);
                        }
                    }
                    // The deciding policy: the refusal that answers, else
                    // the one with the fewest requests left.
                    let deciding = denied.or_else(|| {
                        results
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, d)| d.remaining)
                            .map(|(i, d)| (i, *d))
                    });
                    if let Some((i, d)) = deciding {
                        let (p, k) = &keys[i];
                        traced(
                            &config.policies[usize::from(*p)],
                            k,
                            &d,
                            *cost,
                            config.shadow,
                        );
                    }
                    let decided: Vec<(u16, Decision)> = keys
                        .iter()
                        .map(|(p, _)| *p)
                        .zip(results.iter().copied())
                        .collect();
                    if let Some((i, d)) = denied {
                        if !config.shadow {
                            let res = too_many(
                                config,
                                &config.policies[usize::from(keys[i].0)],
                                &keys[i].1,
                                &d,
                                &decided,
                            );
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(res.map(ResponseBody::retype)));
                        }
                    }
                    let fields = Fields::new(config, &decided);
                    let Some((mut svc, req)) = next.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Inner {
                        fut,
                        fields: Some(fields),
                    });
                }
                StateProj::Inner { fut, fields } => {
                    let mut res = ready!(fut.poll(cx))?;
                    if let Some(fields) = fields.take() {
                        fields.write(res.headers_mut());
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                }
                StateProj::Rejected { res } => {
                    let res = res.take();
                    this.state.set(State::Done);
                    if let Some(res) = res {
                        return Poll::Ready(Ok((*res).map(ResponseBody::retype)));
                    }
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// A future that waits for the store's answers before calling the inner
/// service.
pub(super) fn checking<S, St, R>(
    inner: &mut S,
    shared: &Arc<Shared<St>>,
    req: Request<R>,
    checks: Vec<St::Future>,
    keys: Vec<(u16, Key)>,
    peeking: bool,
    cost: u32,
) -> ResponseFuture<S::Future, St, S, R>
where
    S: Service<Request<R>> + Clone,
    St: RateLimitStore,
{
    // The inner service was polled ready: move that one into the future,
    // keep a fresh clone here.
    let clone = inner.clone();
    let ready_svc = std::mem::replace(inner, clone);
    ResponseFuture {
        state: State::Checking {
            checking: Box::new(Checking {
                results: Vec::with_capacity(keys.len()),
                checks,
                peeking,
                keys,
                cost,
                next: Some((ready_svc, req)),
                shared: shared.clone(),
            }),
        },
    }
}
