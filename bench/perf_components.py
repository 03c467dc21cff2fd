#!/usr/bin/env python3
# perf_components.py PERF.DATA [x]: the self time of a `perf record` of the server, summed by
# component (symbol-name rules below; Swift names demangled with `swift demangle`). With a
# second argument, also the largest unclassified and kernel symbols. bench/README.md, "CPU per
# delivery (issue 22)", shows how it was used.
import subprocess, sys, re, collections
out = subprocess.run(["perf", "report", "-i", sys.argv[1], "--no-children", "-g", "none", "--sort", "dso,sym",
                      "--stdio", "--percent-limit", "0"], capture_output=True, text=True).stdout
out = subprocess.run(["swift", "demangle", "--compact"], input=out, capture_output=True, text=True).stdout
rules = [
 ("access log", r"AccessLog|appendRedacted"),
 ("SQLite (store reads and the sends' writes)", r"sqlite3|libsqlite|SQLiteConnection|ConnectionThread|Persistence\.Database|SQLRow|SQLValue"),
 ("notifier wake-up", r"Notifier"),
 ("session actor / auth", r"Session|Accounts|authenticate|Secrets|sha256|SHA256|libcrypto|RequestContext\+Auth|requireUser"),
 ("routing / request context", r"Router|RequestContext|rawQueryValues|PercentDecoding|MyelinApp\.respond|Metrics|SecurityLog|security"),
 ("unread counts / push rules", r"UnreadCounts|Push[A-Z]|PushEvaluator|PushRule"),
 ("sync presence", r"SyncPresence"),
 ("JSON encoding", r"JSONStreamWriter|JSON\.encod|RawJSONObject|SyncResult|encoded\(for"),
 ("sync planning / assembly", r"SyncBuilder|SyncService|SyncResponseCache|Sync\.|SyncFilter|EventFilter|TimelineService|RoomTimeline|MembershipService|StreamToken|KeyService|TypingService|LazyRoomActor"),
 ("room actor / send", r"RoomActor|EventBuilder|Rooms|RoomService|RoomEvents|Sodium|sodium|canonical|Canonical"),
 ("retain/release", r"swift_retain|swift_release|swift_bridgeObject(Retain|Release)|swift_unknownObject|swift_nonatomic|swift_arrayInitWithCopy|swift_arrayDestroy|Destroy|outlined (copy|destroy|retain|release)|swift_weak"),
 ("malloc/free", r"malloc|free|_int_|swift_slowAlloc|swift_slowDealloc|swift_allocObject|swift_deallocObject|swift_deallocClassInstance|realloc|memalign|tcache|consolidate|swift_allocBox|swift_deallocBox|__libc_calloc"),
 ("task switches / executors", r"withStatusRecordLock|swift_task|swift::|swift_job|swift_continuation|TaskExecutor|WorkerPool|Outbox|runJob|pthread_cond|__lll_lock|pthread_mutex|futex|swift_asyncLet|Task\.|withCheckedContinuation|CheckedContinuation|UnsafeContinuation|swift_defaultActor|DefaultActor|pthread_getspecific|__pthread|_os_unfair|Mutex"),
 ("transport (loops, HTTP)", r"Connection|EventLoop|llhttp|myelin_http|uv_|libuv|HTTPServer|HTTPResponse|HTTPRequest|HTTPHeaders|StatusLine|Transport\.|uv__"),
 ("hashing / collections", r"Hasher|hashValue|hash\(into|Dictionary|_NativeDictionary|_NativeSet|Set<|Array|ContiguousArray|_ArrayBuffer|_StringGuts|String|Substring|memcpy|memmove|memcmp|memset|strlen|__memcpy|__memmove|__memset|__strlen|__memcmp"),
]
totals = collections.Counter(); kernel = collections.Counter(); unknown = collections.Counter()
for line in out.splitlines():
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m: continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
    if kind == "k" or dso.startswith("[kernel"):
        if re.search(r"tcp|ip_|inet|sock|skb|netif|net_|loopback|__dev|napi|epoll|ep_|sys_|syscall|entry_|copy_|_copy|do_syscall|__x64|lock_sock|release_sock", sym):
            c = "kernel: TCP, epoll, syscalls"
        elif re.search(r"sched|switch|futex|wake|schedule|pick_|enqueue|dequeue|update_|hrtimer|tick|rcu|irq|cpu|idle|finish_task|ttwu", sym):
            c = "kernel: scheduler, futex, timers"
        else:
            c = "kernel: other"
        totals[c] += pct; kernel[sym] += pct; continue
    for name, rx in rules:
        if re.search(rx, sym) or re.search(rx, dso):
            totals[name] += pct; break
    else:
        totals["other"] += pct; unknown[sym] += pct
for k, v in totals.most_common(): print("%6.1f%%  %s" % (v, k))
if len(sys.argv) > 2:
    print("-- top other"); [print("%6.2f%% %s" % (v, k[:150])) for k, v in unknown.most_common(25)]
    print("-- top kernel"); [print("%6.2f%% %s" % (v, k[:150])) for k, v in kernel.most_common(15)]
