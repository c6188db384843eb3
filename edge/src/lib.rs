//! The prewarm edge worker. For now a pass-through to the origin; the per-request story
//! (identify → assign → forward → count → signal) lands with the edge issue.

use worker::{Context, Env, Request, Response, Result, Url, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let origin = env.var("ORIGIN_URL")?.to_string();
    let incoming = req.url()?;
    let mut target = Url::parse(&origin)?;
    target.set_path(incoming.path());
    target.set_query(incoming.query());
    let forwarded = Request::new_with_init(
        target.as_str(),
        &worker::RequestInit { method: req.method(), headers: req.headers().clone(), ..Default::default() },
    )?;
    worker::Fetch::Request(forwarded).send().await
}
