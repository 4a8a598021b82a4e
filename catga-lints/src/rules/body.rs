//! What a handler's body does (CATGA020–CATGA025, CATGA030–CATGA033, CATGA042), and the facts
//! whole-program rules need (events published through the context, messages sent, calls to
//! external systems).
//!
//! The checks are syntactic: they see what is written, not types. Each is shaped to avoid the
//! obvious false positives (an awaited `tokio::fs` call is not `std::fs`; `unwrap_or` is not
//! `unwrap`; a guard dropped before an `.await` is not held across it), and each has a
//! near-miss test. Macro invocations are looked into when their arguments parse as
//! expressions (`format!`, `vec!`, `assert!` …).

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Expr, ExprMethodCall, Ident, Pat, Stmt, Token};

use super::external::{BUILDERS, CLIENT_CRATES, CLIENT_METHODS, opens_unit_of_work};
use crate::catalog;
use crate::finding::Finding;

/// `send`, `publish` and friends: a message dispatched through a mediator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `send`, `send_with`, `send_batch`.
    Send,
    /// `publish`, `publish_with`.
    Publish,
}

/// A dispatch written in the body: `x.send(T { … })`, `ctx.publish(T(…))`.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// Which verb.
    pub verb: Verb,
    /// Whether the receiver is the handler's context.
    pub through_context: bool,
    /// The message's type name, when the argument names it (`T { … }`, `T(…)`, `T`).
    pub message: Option<String>,
    /// The call.
    pub span: Span,
}

/// Everything the body scan found.
#[derive(Debug, Default)]
pub struct BodyFacts {
    /// Blocking calls, panics, locks.
    pub findings: Vec<Finding>,
    /// Messages sent or published.
    pub dispatches: Vec<Dispatch>,
    /// Calls that reach an external system, with what they are.
    pub external_calls: Vec<(Span, String)>,
}

/// Scans a handler body. `context` is the name of its `&Context` parameter, if any.
pub fn scan(block: &syn::Block, context: Option<&Ident>) -> BodyFacts {
    let mut scan = Scan {
        context,
        facts: BodyFacts::default(),
        units: Vec::new(),
        held: Vec::new(),
        awaited: false,
    };
    scan.visit_block(block);
    scan.facts
}

/// Scans any function body for dispatches only (for whole-program rules outside handlers).
pub fn dispatches(block: &syn::Block) -> Vec<Dispatch> {
    scan(block, None).dispatches
}

/// A lock guard bound by `let` and not yet dropped.
struct Guard {
    name: String,
    /// A `std::sync` guard (not awaited to acquire): holding it across `.await` is CATGA025.
    sync: bool,
    /// Already reported as held across an await (once per guard).
    reported: bool,
}

struct Scan<'c> {
    context: Option<&'c Ident>,
    facts: BodyFacts,
    /// Bindings of a unit of work (`let writes = RedisWrites::current()?;`).
    units: Vec<String>,
    /// Guards alive at this point, innermost block last.
    held: Vec<Guard>,
    /// Whether the expression being visited is the operand of `.await`.
    awaited: bool,
}

impl Scan<'_> {
    fn report(&mut self, rule: &'static catalog::Rule, span: Span, message: impl Into<String>) {
        self.facts.findings.push(Finding::new(rule, span, message));
    }

    /// Whether `expr` is a binding of a unit of work.
    fn is_unit_of_work(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Path(p) => p
                .path
                .get_ident()
                .is_some_and(|ident| self.units.iter().any(|u| ident == u)),
            _ => false,
        }
    }

    fn is_context(&self, expr: &Expr) -> bool {
        match (expr, self.context) {
            (Expr::Path(p), Some(ctx)) => p.path.is_ident(ctx),
            _ => false,
        }
    }

    /// Runs `f` as code that executes later (a closure or `async` block): no guard is held.
    fn deferred(&mut self, f: impl FnOnce(&mut Self)) {
        let held = std::mem::take(&mut self.held);
        f(self);
        self.held = held;
    }
}

/// The path of a called function, as segments.
pub(super) fn segments(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// A lock acquisition: `x.lock()`, `x.read()`, `x.write()`, `x.try_lock()` with no arguments.
fn is_lock_call(call: &ExprMethodCall) -> bool {
    call.args.is_empty()
        && matches!(
            call.method.to_string().as_str(),
            "lock" | "read" | "write" | "try_lock" | "try_read" | "try_write"
        )
}

/// If `init` evaluates to a lock guard (modulo `?`, `.unwrap()`, `.expect(…)`, `.map_err(…)`
/// and `.unwrap_or_else(…)`, the ways a poisoned lock is handled), whether it is
/// a `std::sync` one (`Some(true)`) or an async one acquired with `.await` (`Some(false)`).
fn guard_kind(init: &Expr) -> Option<bool> {
    match init {
        Expr::Try(t) => guard_kind(&t.expr),
        Expr::MethodCall(m)
            if matches!(
                m.method.to_string().as_str(),
                "unwrap" | "expect" | "map_err" | "unwrap_or_else"
            ) =>
        {
            guard_kind(&m.receiver)
        }
        Expr::MethodCall(m) if is_lock_call(m) => Some(true),
        Expr::Await(a) => match &*a.base {
            Expr::MethodCall(m) if is_lock_call(m) => Some(false),
            _ => None,
        },
        Expr::Paren(p) => guard_kind(&p.expr),
        _ => None,
    }
}

/// The message type a dispatch argument names: `T { … }`, `T(…)`, `T`, `m::T { … }`.
fn named_type(arg: &Expr) -> Option<String> {
    let path = match arg {
        Expr::Struct(s) => &s.path,
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) => &p.path,
            _ => return None,
        },
        Expr::Path(p) => &p.path,
        _ => return None,
    };
    let last = path.segments.last()?.ident.to_string();
    // A call of a lower-case function (`make_order()`) names no type.
    last.starts_with(|c: char| c.is_ascii_uppercase())
        .then_some(last)
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_block(&mut self, block: &'ast syn::Block) {
        let outer = self.held.len();
        for stmt in &block.stmts {
            self.visit_stmt(stmt);
            match stmt {
                Stmt::Local(local) => {
                    let Some(init) = &local.init else { continue };
                    let name = match &local.pat {
                        Pat::Ident(p) => p.ident.to_string(),
                        Pat::Type(t) => match &*t.pat {
                            Pat::Ident(p) => p.ident.to_string(),
                            _ => continue,
                        },
                        _ => continue,
                    };
                    if opens_unit_of_work(&init.expr) {
                        self.units.push(name.clone());
                    }
                    if let Some(sync) = guard_kind(&init.expr) {
                        self.held.push(Guard {
                            name,
                            sync,
                            reported: false,
                        });
                    }
                }
                Stmt::Expr(Expr::Call(call), _) => {
                    // `drop(guard)` releases it.
                    if let Expr::Path(f) = &*call.func
                        && f.path.is_ident("drop")
                        && let Some(Expr::Path(arg)) = call.args.first()
                        && let Some(ident) = arg.path.get_ident()
                    {
                        let name = ident.to_string();
                        if let Some(at) = self.held.iter().rposition(|g| g.name == name) {
                            self.held.remove(at);
                        }
                    }
                }
                _ => {}
            }
        }
        self.held.truncate(outer);
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {
        // A nested `fn` or `impl` is not the handler's code.
    }

    fn visit_expr_closure(&mut self, closure: &'ast syn::ExprClosure) {
        self.deferred(|s| visit::visit_expr_closure(s, closure));
    }

    fn visit_expr_async(&mut self, block: &'ast syn::ExprAsync) {
        self.deferred(|s| visit::visit_expr_async(s, block));
    }

    fn visit_expr_await(&mut self, node: &'ast syn::ExprAwait) {
        let span = node.await_token.span;
        let mut newly_reported = Vec::new();
        for guard in self.held.iter_mut().filter(|g| g.sync && !g.reported) {
            guard.reported = true;
            newly_reported.push(guard.name.clone());
        }
        for name in newly_reported {
            self.report(
                &catalog::SYNC_LOCK_ACROSS_AWAIT,
                span,
                format!("the lock guard `{name}` is held across this `.await`"),
            );
        }
        self.awaited = true;
        self.visit_expr(&node.base);
        self.awaited = false;
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        let awaited = std::mem::take(&mut self.awaited);
        if let Expr::Path(func) = &*call.func {
            let path = segments(&func.path);
            let text = path.join("::");
            let has = |name: &str| path.iter().any(|s| s == name);
            // The function's own name is the most precise place to point at (a macro on
            // stable cannot join the spans of a whole path).
            let span = func
                .path
                .segments
                .last()
                .map_or_else(|| call.span(), |s| s.ident.span());
            if path.ends_with(&["thread".into(), "sleep".into()]) {
                self.report(
                    &catalog::BLOCKING_SLEEP,
                    span,
                    "`std::thread::sleep` blocks the runtime thread",
                );
            } else if !awaited
                && (has("fs") && !has("tokio")
                    || text.ends_with("File::open")
                    || text.ends_with("File::create"))
            {
                self.report(
                    &catalog::BLOCKING_FS,
                    span,
                    format!("`{text}` is blocking file I/O"),
                );
            } else if !awaited
                && !has("tokio")
                && (has("net") && path.first().is_some_and(|s| s == "std")
                    || ["TcpStream", "TcpListener", "UdpSocket"]
                        .iter()
                        .any(|t| has(t) && (has("connect") || has("bind"))))
            {
                self.report(
                    &catalog::BLOCKING_NET,
                    span,
                    format!("`{text}` is blocking network I/O"),
                );
            } else if has("reqwest") && has("blocking") || path.first().is_some_and(|s| s == "ureq")
            {
                self.report(
                    &catalog::BLOCKING_HTTP,
                    span,
                    format!("`{text}` is a blocking HTTP call"),
                );
            } else if path.last().is_some_and(|s| s == "block_on") {
                self.report(
                    &catalog::BLOCK_ON,
                    span,
                    "`block_on` blocks the runtime thread",
                );
            }
            let builds = BUILDERS
                .iter()
                .any(|b| path.iter().map(String::as_str).eq(b.iter().copied()));
            if !builds
                && path
                    .first()
                    .is_some_and(|s| CLIENT_CRATES.contains(&s.as_str()))
            {
                self.facts.external_calls.push((span, format!("`{text}`")));
            }
        }
        visit::visit_expr_call(self, call);
    }

    fn visit_expr_method_call(&mut self, call: &'ast ExprMethodCall) {
        let awaited = std::mem::take(&mut self.awaited);
        let method = call.method.to_string();
        let span = call.method.span();
        match method.as_str() {
            "unwrap" if call.args.is_empty() => {
                self.report(
                    &catalog::UNWRAP_IN_HANDLER,
                    span,
                    "`unwrap` in a handler can panic",
                );
            }
            "expect" if call.args.len() == 1 => {
                self.report(
                    &catalog::EXPECT_IN_HANDLER,
                    span,
                    "`expect` in a handler can panic",
                );
            }
            "block_on" => self.report(
                &catalog::BLOCK_ON,
                span,
                "`block_on` blocks the runtime thread",
            ),
            "to_socket_addrs" if !awaited => self.report(
                &catalog::BLOCKING_NET,
                span,
                "`to_socket_addrs` resolves names with blocking I/O",
            ),
            "send" | "send_with" | "send_batch" | "publish" | "publish_with"
                if !call.args.is_empty() =>
            {
                let verb = if method.starts_with("send") {
                    Verb::Send
                } else {
                    Verb::Publish
                };
                let through_context = self.is_context(&call.receiver);
                let message = call.args.first().and_then(named_type);
                self.facts.dispatches.push(Dispatch {
                    verb,
                    through_context,
                    message,
                    span: call.span(),
                });
            }
            // A request builder's `send()` (reqwest, surf …) performs the request.
            "send" if call.args.is_empty() => {
                self.facts
                    .external_calls
                    .push((call.span(), "an HTTP request (`.send()`)".into()));
            }
            m if CLIENT_METHODS.contains(&m) && !self.is_unit_of_work(&call.receiver) => {
                self.facts
                    .external_calls
                    .push((call.span(), format!("`.{m}(…)`")));
            }
            _ => {}
        }
        if is_lock_call(call) && !self.held.is_empty() {
            let holding = self
                .held
                .iter()
                .map(|g| format!("`{}`", g.name))
                .collect::<Vec<_>>()
                .join(", ");
            self.report(
                &catalog::NESTED_LOCKS,
                span,
                format!("this lock is taken while {holding} is held"),
            );
        }
        visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_index(&mut self, index: &'ast syn::ExprIndex) {
        let full_range =
            matches!(&*index.index, Expr::Range(r) if r.start.is_none() && r.end.is_none());
        if !full_range {
            self.report(
                &catalog::INDEXING_IN_HANDLER,
                index.bracket_token.span.join(),
                "indexing panics when the index is out of bounds",
            );
        }
        visit::visit_expr_index(self, index);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if matches!(
            name.as_str(),
            "panic" | "unreachable" | "todo" | "unimplemented"
        ) {
            self.report(
                &catalog::PANIC_IN_HANDLER,
                mac.path.span(),
                format!("`{name}!` in a handler panics"),
            );
        }
        // Look into the arguments when they are expressions (`format!`, `vec!`, `assert!` …).
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(body: &str) -> Vec<&'static str> {
        let block: syn::Block = syn::parse_str(&format!("{{ {body} }}")).unwrap();
        let ctx: Ident = syn::parse_str("ctx").unwrap();
        scan(&block, Some(&ctx))
            .findings
            .iter()
            .map(|f| f.rule.id)
            .collect()
    }

    #[test]
    fn blocking_calls_fire_and_async_ones_do_not() {
        assert_eq!(rules("std::thread::sleep(d);"), ["CATGA020"]);
        assert!(rules("tokio::time::sleep(d).await;").is_empty());
        assert_eq!(rules("let s = std::fs::read_to_string(p)?;"), ["CATGA021"]);
        assert_eq!(rules("let s = fs::read(p)?;"), ["CATGA021"]);
        assert!(rules("let s = tokio::fs::read(p).await?;").is_empty());
        assert!(
            rules("let s = fs::read(p).await?;").is_empty(),
            "awaited: `tokio::fs` imported as `fs`"
        );
        assert_eq!(
            rules("let s = std::net::TcpStream::connect(a)?;"),
            ["CATGA022"]
        );
        assert!(rules("let s = tokio::net::TcpStream::connect(a).await?;").is_empty());
        assert_eq!(rules("let b = reqwest::blocking::get(u)?;"), ["CATGA023"]);
        assert_eq!(
            rules("let b = futures::executor::block_on(f);"),
            ["CATGA024"]
        );
        assert_eq!(rules("let b = handle.block_on(f);"), ["CATGA024"]);
    }

    #[test]
    fn guards_across_awaits() {
        assert_eq!(
            rules("let g = m.lock().unwrap(); x.await; g.push(1);"),
            ["CATGA030", "CATGA025"]
        );
        assert_eq!(
            rules("let g = m.lock().unwrap(); drop(g); x.await;"),
            ["CATGA030"]
        );
        assert_eq!(
            rules("{ let g = m.lock().unwrap(); g.push(1); } x.await;"),
            ["CATGA030"]
        );
        assert_eq!(
            rules("let n = m.lock().unwrap().len(); x.await;"),
            ["CATGA030"]
        );
        assert!(
            rules("let g = m.lock().await; x.await;").is_empty(),
            "an async mutex may be held"
        );
        assert_eq!(rules("let g = m.lock()?; if c { x.await; }"), ["CATGA025"]);
        assert!(rules("let g = m.lock()?; let f = async { x.await };").is_empty());
    }

    #[test]
    fn nested_locks() {
        assert_eq!(rules("let a = m.lock()?; let b = n.lock()?;"), ["CATGA042"]);
        assert!(rules("let a = m.lock()?.len(); let b = n.lock()?;").is_empty());
        assert!(rules("let a = m.lock()?; drop(a); let b = n.lock()?;").is_empty());
        assert_eq!(
            rules(
                "let a = m.lock().map_err(E::from)?; let b = n.lock().unwrap_or_else(|e| e.into_inner());"
            ),
            ["CATGA042"]
        );
    }

    #[test]
    fn panics() {
        assert_eq!(rules("x.unwrap();"), ["CATGA030"]);
        assert!(rules("x.unwrap_or(0); x.unwrap_or_default();").is_empty());
        assert_eq!(rules("x.expect(\"y\");"), ["CATGA031"]);
        assert_eq!(
            rules("panic!(\"no\"); unreachable!();"),
            ["CATGA032", "CATGA032"]
        );
        assert_eq!(rules("let a = v[0];"), ["CATGA033"]);
        assert!(rules("let a = &v[..]; let b = v.get(0);").is_empty());
        assert_eq!(rules("println!(\"{}\", x.unwrap());"), ["CATGA030"]);
        assert!(
            rules("fn helper() { x.unwrap(); }").is_empty(),
            "nested items are not the handler"
        );
    }

    #[test]
    fn dispatches_and_external_calls() {
        let block: syn::Block = syn::parse_str(
            "{ ctx.publish(Placed { id })?; app.send(Reserve(1)).await?; tx.send(x).await?; \
               http.post(u).send().await?; redis::cmd(\"SET\").arg(1).query_async(&mut c).await?; }",
        )
        .unwrap();
        let ctx: Ident = syn::parse_str("ctx").unwrap();
        let facts = scan(&block, Some(&ctx));
        let d: Vec<(Verb, bool, Option<&str>)> = facts
            .dispatches
            .iter()
            .map(|d| (d.verb, d.through_context, d.message.as_deref()))
            .collect();
        assert_eq!(
            d,
            vec![
                (Verb::Publish, true, Some("Placed")),
                (Verb::Send, false, Some("Reserve")),
                (Verb::Send, false, None),
            ]
        );
        assert_eq!(facts.external_calls.len(), 2);
    }

    #[test]
    fn writes_queued_in_a_unit_of_work_are_not_external_calls() {
        let block: syn::Block = syn::parse_str(
            "{ let writes = RedisWrites::current()?; writes.xadd(&k, \"*\", &[(\"a\", 1)])?; \
               let mut cmd = redis::cmd(\"LPUSH\"); cmd.arg(&k); writes.command(cmd, &[&k])?; \
               conn.xadd(&k, \"*\", &[(\"a\", 1)]).await?; }",
        )
        .unwrap();
        let facts = scan(&block, None);
        let calls: Vec<&str> = facts
            .external_calls
            .iter()
            .map(|(_, c)| c.as_str())
            .collect();
        assert_eq!(
            calls,
            vec!["`.xadd(…)`"],
            "only the direct XADD on a connection"
        );
    }
}
