//! Commands (RPC): handlers registered by name, global then per-command middleware, and
//! before/after hooks.
//!
//! A call runs: global middleware (in registration order) → the command's middleware → before
//! hooks (one may answer instead of the handler) → the handler, under its timeout → after hooks
//! (each sees the result or error and may replace it). A panic anywhere in that chain becomes an
//! `internal` (100) error; the connection lives on.

use crate::error::Error;
use crate::ids::ConnId;
use crate::node::Node;
use futures_util::FutureExt;
use plexus_protocol::{ErrorCode, Payload};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler returns.
pub type CommandResult = Result<Payload, Error>;

/// Typed values middleware attaches to a call for the handler (like `http::Extensions`).
#[derive(Default)]
pub struct Extensions(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Extensions {
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }
}

/// Everything a handler knows about the call.
pub struct CommandContext {
    pub node: Node,
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    /// The user's info from authentication.
    pub info: Option<Payload>,
    /// A snapshot of the connection's metadata when the call started.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub method: Arc<str>,
    pub payload: Payload,
    pub extensions: Extensions,
}

/// A command handler: any `async fn(CommandContext) -> CommandResult`.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, ctx: CommandContext) -> BoxFuture<CommandResult>;
}

impl<F, Fut> Handler for F
where
    F: Fn(CommandContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CommandResult> + Send + 'static,
{
    fn call(&self, ctx: CommandContext) -> BoxFuture<CommandResult> {
        Box::pin(self(ctx))
    }
}

/// Middleware: may reject the call or enrich its context (`extensions`, `metadata`).
pub trait Middleware: Send + Sync + 'static {
    fn handle(&self, ctx: CommandContext) -> BoxFuture<Result<CommandContext, Error>>;
}

impl<F, Fut> Middleware for F
where
    F: Fn(CommandContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CommandContext, Error>> + Send + 'static,
{
    fn handle(&self, ctx: CommandContext) -> BoxFuture<Result<CommandContext, Error>> {
        Box::pin(self(ctx))
    }
}

/// What a before hook decides.
pub enum Before {
    /// Go on to the handler with this context.
    Continue(CommandContext),
    /// Answer with this result; the handler does not run (after hooks still do).
    Respond(CommandResult),
}

/// A hook that runs before the handler.
pub trait BeforeHook: Send + Sync + 'static {
    fn before(&self, ctx: CommandContext) -> BoxFuture<Before>;
}

impl<F, Fut> BeforeHook for F
where
    F: Fn(CommandContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Before> + Send + 'static,
{
    fn before(&self, ctx: CommandContext) -> BoxFuture<Before> {
        Box::pin(self(ctx))
    }
}

/// What an after hook sees besides the result.
#[derive(Clone, Debug)]
pub struct CallInfo {
    pub conn: ConnId,
    pub user: Option<Arc<str>>,
    pub method: Arc<str>,
}

/// A hook that runs after the handler (or a short-circuiting before hook) and may replace the
/// result.
pub trait AfterHook: Send + Sync + 'static {
    fn after(&self, call: CallInfo, result: CommandResult) -> BoxFuture<CommandResult>;
}

impl<F, Fut> AfterHook for F
where
    F: Fn(CallInfo, CommandResult) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CommandResult> + Send + 'static,
{
    fn after(&self, call: CallInfo, result: CommandResult) -> BoxFuture<CommandResult> {
        Box::pin(self(call, result))
    }
}

/// One registered command.
pub struct Command {
    handler: Arc<dyn Handler>,
    middleware: Vec<Arc<dyn Middleware>>,
    before: Vec<Arc<dyn BeforeHook>>,
    after: Vec<Arc<dyn AfterHook>>,
    timeout: Option<Duration>,
    concurrent: bool,
}

impl Command {
    pub fn new(handler: impl Handler) -> Command {
        Command {
            handler: Arc::new(handler),
            middleware: Vec::new(),
            before: Vec::new(),
            after: Vec::new(),
            timeout: None,
            concurrent: false,
        }
    }

    /// Middleware for this command only, after the global middleware.
    pub fn middleware(mut self, m: impl Middleware) -> Command {
        self.middleware.push(Arc::new(m));
        self
    }

    pub fn before(mut self, hook: impl BeforeHook) -> Command {
        self.before.push(Arc::new(hook));
        self
    }

    pub fn after(mut self, hook: impl AfterHook) -> Command {
        self.after.push(Arc::new(hook));
        self
    }

    /// The handler's timeout (default: `Limits::command_timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Command {
        self.timeout = Some(timeout);
        self
    }

    /// Calls of this command run concurrently with the connection's later requests, and their
    /// replies may overtake them. By default a connection's requests are answered in order.
    pub fn concurrent(mut self) -> Command {
        self.concurrent = true;
        self
    }

    pub fn is_concurrent(&self) -> bool {
        self.concurrent
    }
}

/// Commands by name, and the global middleware and hooks.
#[derive(Default)]
pub struct Commands {
    commands: HashMap<String, Arc<Command>>,
    fallback: Option<Arc<Command>>,
    middleware: Vec<Arc<dyn Middleware>>,
    before: Vec<Arc<dyn BeforeHook>>,
    after: Vec<Arc<dyn AfterHook>>,
}

impl Commands {
    pub fn register(&mut self, name: impl Into<String>, command: Command) {
        self.commands.insert(name.into(), Arc::new(command));
    }

    /// Global middleware: runs for every command, before the command's own.
    pub fn middleware(&mut self, m: impl Middleware) {
        self.middleware.push(Arc::new(m));
    }

    /// A before hook for every command (runs before the command's own).
    pub fn before(&mut self, hook: impl BeforeHook) {
        self.before.push(Arc::new(hook));
    }

    /// An after hook for every command (runs after the command's own).
    pub fn after(&mut self, hook: impl AfterHook) {
        self.after.push(Arc::new(hook));
    }

    /// The command that answers methods no other command is registered for (for example a
    /// backend reached over HTTP). Without one, such calls get `method_not_found`.
    pub fn fallback(&mut self, command: Command) {
        self.fallback = Some(Arc::new(command));
    }

    /// The command for `name`, or the fallback.
    pub fn get(&self, name: &str) -> Option<Arc<Command>> {
        self.commands.get(name).or(self.fallback.as_ref()).cloned()
    }

    /// The future of one call: the whole chain, with its timeout and panic guard.
    pub(crate) fn run(
        &self,
        command: Arc<Command>,
        ctx: CommandContext,
        default_timeout: Duration,
    ) -> BoxFuture<CommandResult> {
        let middleware: Vec<_> = self
            .middleware
            .iter()
            .chain(command.middleware.iter())
            .cloned()
            .collect();
        let before: Vec<_> = self
            .before
            .iter()
            .chain(command.before.iter())
            .cloned()
            .collect();
        let after: Vec<_> = command
            .after
            .iter()
            .chain(self.after.iter())
            .cloned()
            .collect();
        let timeout = command.timeout.unwrap_or(default_timeout);
        let call = CallInfo {
            conn: ctx.conn,
            user: ctx.user.clone(),
            method: ctx.method.clone(),
        };
        let chain = async move {
            let mut ctx = ctx;
            for m in &middleware {
                ctx = m.handle(ctx).await?;
            }
            for hook in &before {
                match hook.before(ctx).await {
                    Before::Continue(next) => ctx = next,
                    Before::Respond(result) => return result,
                }
            }
            match tokio::time::timeout(timeout, command.handler.call(ctx)).await {
                Ok(result) => result,
                Err(_) => Err(Error::new(
                    ErrorCode::TIMEOUT,
                    format!("handler took longer than {timeout:?}"),
                )),
            }
        };
        Box::pin(async move {
            let mut result = guard(chain).await;
            for hook in &after {
                result = guard(hook.after(call.clone(), result)).await;
            }
            result
        })
    }
}

async fn guard(fut: impl Future<Output = CommandResult>) -> CommandResult {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "a command handler panicked");
            Err(Error::internal("internal error"))
        }
    }
}
