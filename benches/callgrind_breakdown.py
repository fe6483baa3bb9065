#!/usr/bin/env python3
"""Where the instructions of one request go, from a callgrind profile written by
`LOADTEST_CALLGRIND=N scripts/loadtest` (docs/performance.md).

    benches/callgrind_breakdown.py FILE REQUESTS

Prints two Markdown tables, in instructions per request:

* by component: every function's *self* cost, grouped by the library it belongs to (by symbol
  prefix), so the groups add up to the total;
* by step: the *inclusive* cost of the function that performs each step of an exchange. Steps
  can nest (client authentication includes the ES256 verify of a client assertion), so this
  table does not add up; it says what each step costs in full.
"""
import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(?:\S*?:)?(.*?)(?: \[[^\]]*\])?$")


def costs(path, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", path],
        check=True, capture_output=True, text=True).stdout
    table, started = {}, False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        if not started:
            continue
        match = LINE.match(line)
        if match:
            name = match.group(2)
            table[name] = table.get(name, 0) + int(match.group(1).replace(",", ""))
    return table


# (group, test on the demangled symbol); first match wins.
COMPONENTS = [
    ("crypto (aws-lc: RSA, ECDSA, SHA-2)", lambda s: s.startswith(("aws_lc", "__ecp_nistz256", "ecp_nistz256", "sha256_", "sha512_", "bn_", "aws_lc_0_")) or "aws_lc" in s.split("::")[0]),
    ("argon2", lambda s: "argon2" in s or "blake2" in s.lower()),
    ("SQLite engine", lambda s: s.startswith("sqlite3") or s.startswith(("btree", "pager", "vdbe", "wal"))),
    ("sqlx (both drivers, pool, worker hand-off)", lambda s: "sqlx" in s),
    ("tracing / logging", lambda s: "tracing" in s),
    ("metrics", lambda s: "metrics" in s),
    ("JSON (serde_json, serde)", lambda s: "serde_json" in s or s.startswith("serde::") or "<serde::" in s),
    ("HTTP stack (hyper, axum, tower, http, httparse)", lambda s: any(k in s for k in ("hyper", "axum", "tower", "httparse", "http::", "<http"))),
    ("tokio runtime", lambda s: "tokio" in s),
    ("jsonwebtoken, base64 (non-crypto JOSE)", lambda s: "jsonwebtoken" in s or "base64" in s),
    ("CEL policy", lambda s: "cel_interpreter" in s),
    ("frontdesk's own code", lambda s: "frontdesk" in s),
    ("allocator (malloc, free)", lambda s: any(k in s for k in ("malloc", "free", "realloc", "calloc", "tcache", "arena_get", "alloc::alloc", "__rust_alloc", "__rust_dealloc", "__rdl_"))),
    ("libc memory/string routines", lambda s: any(k in s for k in ("memcpy", "memmove", "memset", "memcmp", "strlen", "memchr", "bcmp"))),
    ("kernel entry stubs, futex, thread sync in libc", lambda s: any(k in s for k in ("pthread", "futex", "syscall", "lll_", "__GI___", "epoll", "__libc_"))),
]

STEPS = [
    ("HTTP connection task (everything hyper polls: parsing, middleware, handler)", ["hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch"]),
    ("… the `/token` handler (`http::token::form_endpoint`)", ["frontdesk::http::token::form_endpoint::{{closure}}"]),
    ("… … token service (`TokenService::token`, without the audit wait)", ["frontdesk::oauth::service::TokenService::token::{{closure}}"]),
    ("… … … client authentication", ["frontdesk::oauth::client_auth::authenticate::{{closure}}"]),
    ("… … … subject token (`exchange::verify_subject`)", ["frontdesk::oauth::exchange::verify_subject::{{closure}}"]),
    ("… … … signing the ID-JAG (`KeyRing::sign`)", ["frontdesk::keys::KeyRing::sign"]),
    ("… … form decoding (`FormParams::parse`)", ["frontdesk::oauth::request::FormParams::parse"]),
    ("crypto: signature verifications (RS256 subject token, ES256 assertion)", ["aws_lc_0_47_0_EVP_DigestVerify"]),
    ("crypto: ES256 signature", ["aws_lc_rs::ec::key_pair::EcdsaKeyPair::sign"]),
    ("audit / replay group-commit writer tasks (`BatchWriter`: batching loop and commit tasks)", ["frontdesk::store::audit_writer::BatchWriter<T,R>::spawn::{{closure}}", "frontdesk::store::audit_writer::BatchWriter<T,R>::spawn::{{closure}}::{{closure}}"]),
    ("SQLite worker threads (statements, commits)", ["sqlx_sqlite::connection::worker::ConnectionWorker::establish::{{closure}}"]),
    ("SQLite engine: `sqlite3_step` (executing the statements)", ["sqlite3_step"]),
    ("tracing: span creation (`Registry::new_span` + layers)", ["<tracing_subscriber::layer::layered::Layered<L,S> as tracing_core::subscriber::Subscriber>::new_span"]),
    ("tracing: span enter/exit", ["<tracing_subscriber::layer::layered::Layered<L,S> as tracing_core::subscriber::Subscriber>::enter", "<tracing_subscriber::layer::layered::Layered<L,S> as tracing_core::subscriber::Subscriber>::exit"]),
    ("metrics middleware (`http::metrics::track`)", ["frontdesk::http::metrics::track::{{closure}}"]),
    ("request id (`MakeRequestId`)", ["<tower_http::request_id::MakeRequestUuid as tower_http::request_id::MakeRequestId>::make_request_id", "<frontdesk::http::request_id::MakeSequentialRequestId as tower_http::request_id::MakeRequestId>::make_request_id"]),
    ("JSON response body (`axum::Json::into_response`)", ["<axum::json::Json<T> as axum_core::response::into_response::IntoResponse>::into_response"]),
]


def main():
    path, requests = sys.argv[1], int(sys.argv[2])
    exclusive = costs(path, False)
    total = sum(exclusive.values())
    groups = {}
    for name, cost in exclusive.items():
        group = next((g for g, test in COMPONENTS if test(name)), "other")
        groups[group] = groups.get(group, 0) + cost
    print(f"Total: {total // requests:,} instructions per request\n")
    print("| component (self cost) | instructions / request | share |")
    print("|---|---:|---:|")
    for group, cost in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {group} | {cost // requests:,} | {100 * cost / total:.1f} % |")
    inclusive = costs(path, True)
    print()
    print("| step (inclusive cost of the function doing it) | instructions / request | share |")
    print("|---|---:|---:|")
    for label, names in STEPS:
        cost = sum(inclusive.get(name, 0) for name in names)
        if cost:
            print(f"| {label} | {cost // requests:,} | {100 * cost / total:.1f} % |")


if __name__ == "__main__":
    main()
