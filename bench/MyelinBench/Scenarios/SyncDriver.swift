import Foundation
import Synchronization

/// Long-polls `/sync` for every user of a run, each on its own keep-alive connection, until
/// `stop()`. Responses that carry the harness's messages are scanned into the ledger; the rest
/// only advance `since` (found with a byte scan, so idle polls cost almost nothing to parse).
final class SyncDriver: Sendable {
    let api: MatrixAPI
    let tally: Tally
    let ledger: DeliveryLedger?
    let prefix: String
    private let query: String
    private let timeout: Double
    private let stopping = Atomic<Bool>(false)
    let connected = Atomic<Int>(0)    // users whose first long-poll has been sent
    let inFlight = Atomic<Int>(0)     // long-polls awaiting their response now
    let responses = Atomic<Int>(0)    // sync responses received (200)
    let syncLatency = LatencyRecorder()  // request → response (≈ timeout when idle)

    init(api: MatrixAPI, tally: Tally, ledger: DeliveryLedger?, prefix: String, filter: String, timeout: Double) {
        self.api = api
        self.tally = tally
        self.ledger = ledger
        self.prefix = prefix
        self.timeout = timeout
        query = "filter=\(percentEncode(filter))&timeout=\(Int(timeout * 1000))"
    }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    func stop() { stopping.store(true, ordering: .relaxed) }

    /// Runs every user's loop; starts them at `ramp` users per second (0 = all at once) so
    /// that thousands of connections do not all arrive in one accept backlog.
    func run(_ users: [BenchUser], ramp: Double) async {
        await withTaskGroup(of: Void.self) { group in
            for (n, user) in users.enumerated() {
                if isStopping { break }
                if ramp > 0 && n > 0 && n % 50 == 0 {
                    try? await Task.sleep(for: .seconds(50 / ramp))
                }
                group.addTask { await self.loop(user) }
            }
        }
    }

    private func loop(_ user: BenchUser) async {
        let conn = api.http.makeConnection()
        var since = user.nextBatch
        var first = true
        let path = "\(MatrixAPI.v3)/sync"
        while !isStopping {
            let q = since.map { "\(query)&since=\(percentEncode($0))" } ?? query
            if first { connected.add(1, ordering: .relaxed); first = false }
            inFlight.add(1, ordering: .relaxed)
            let t0 = monotonicNanos()
            let outcome = await api.raw(conn, "GET", "\(path)?\(q)", token: user.token, timeout: timeout + 60)
            inFlight.subtract(1, ordering: .relaxed)
            let now = monotonicNanos()
            if isStopping { return }
            switch outcome {
            case .failure(let t):
                tally.add("sync \(t.key)")
                try? await Task.sleep(for: .seconds(1))
                continue
            case .success(let response):
                guard response.status == 200 else {
                    let errcode = (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["errcode"] as? String
                    tally.add("sync \(response.status)\(errcode.map { " " + $0 } ?? "")")
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                syncLatency.record(nanos: now &- t0)
                responses.add(1, ordering: .relaxed)
                guard let next = scanNextBatch(response.body) ?? parseNextBatch(response.body) else {
                    tally.add("sync malformed-body")
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                since = next
                if let ledger, contains(response.body, marker) {
                    scanDeliveries(response.body, user: user, ledger: ledger, now: now)
                }
            }
        }
    }

    private var marker: [UInt8] { Array("bench_id".utf8) }

    private func scanDeliveries(_ body: [UInt8], user: BenchUser, ledger: DeliveryLedger, now: UInt64) {
        if let scanned = DeliveryScanner.scan(body) {
            for _ in 0..<scanned.limitedTimelines { ledger.limitedTimeline() }
            for d in scanned.deliveries where d.run == prefix && d.sender != user.userID {
                ledger.delivered(d.id, sentAt: d.t0, now: now)
            }
            return
        }
        // What the scanner does not read (a fractional number, odd escapes): the full parse.
        guard let json = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            tally.add("sync malformed-body")
            return
        }
        let join = ((json["rooms"] as? [String: Any])?["join"] as? [String: Any]) ?? [:]
        for (_, roomValue) in join {
            guard let timeline = (roomValue as? [String: Any])?["timeline"] as? [String: Any] else { continue }
            if timeline["limited"] as? Bool == true { ledger.limitedTimeline() }
            for case let event as [String: Any] in (timeline["events"] as? [Any]) ?? [] {
                guard let content = event["content"] as? [String: Any],
                      content["bench_run"] as? String == prefix,
                      let id = (content["bench_id"] as? NSNumber)?.int64Value,
                      let t0 = (content["bench_t0"] as? NSNumber)?.uint64Value,
                      event["sender"] as? String != user.userID else { continue }
                ledger.delivered(id, sentAt: t0, now: now)
            }
        }
    }
}

/// Finds `"next_batch": "…"` in a sync body without parsing the whole document.
func scanNextBatch(_ body: [UInt8]) -> String? {
    let key = Array("\"next_batch\"".utf8)
    guard let at = find(body, key) else { return nil }
    var i = at + key.count
    while i < body.count, body[i] == 32 || body[i] == 9 || body[i] == 10 || body[i] == 13 { i += 1 }
    guard i < body.count, body[i] == UInt8(ascii: ":") else { return nil }
    i += 1
    while i < body.count, body[i] == 32 || body[i] == 9 || body[i] == 10 || body[i] == 13 { i += 1 }
    guard i < body.count, body[i] == UInt8(ascii: "\"") else { return nil }
    i += 1
    let start = i
    while i < body.count, body[i] != UInt8(ascii: "\"") {
        if body[i] == UInt8(ascii: "\\") { return nil }  // escaped tokens: not worth a scanner
        i += 1
    }
    guard i < body.count else { return nil }
    return String(decoding: body[start..<i], as: UTF8.self)
}

/// The slow path for a `next_batch` the byte scan could not read (escapes, odd spacing).
func parseNextBatch(_ body: [UInt8]) -> String? {
    ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any])?["next_batch"] as? String
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool { find(haystack, needle) != nil }

func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
    guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
    let first = needle[0]
    var i = 0
    let last = haystack.count - needle.count
    return haystack.withUnsafeBufferPointer { h in
        needle.withUnsafeBufferPointer { n in
            while i <= last {
                if h[i] == first {
                    var j = 1
                    while j < n.count && h[i + j] == n[j] { j += 1 }
                    if j == n.count { return i }
                }
                i += 1
            }
            return nil
        }
    }
}
