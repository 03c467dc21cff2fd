#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Writes a line to standard error (progress and diagnostics; the table goes to stdout).
func printErr(_ s: String) {
    let bytes = Array((s + "\n").utf8)
    bytes.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
}

/// Writes to standard output without buffering surprises between threads.
func printOut(_ s: String) {
    let bytes = Array((s + "\n").utf8)
    bytes.withUnsafeBytes { _ = write(1, $0.baseAddress, $0.count) }
}

/// A set-up step's progress ("registering users 340/1000, 85/s, 2 errors"), printed to
/// standard error once a second while the step runs, and once more when it ends.
final class Progress: Sendable {
    let label: String
    let total: Int
    let done = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    private let started = monotonicNanos()
    private let finished = Atomic<Bool>(false)

    init(_ label: String, total: Int) {
        self.label = label
        self.total = total
        let ticker = Task.detached { [self] in
            while !finished.load(ordering: .relaxed) {
                try? await Task.sleep(for: .seconds(1))
                if finished.load(ordering: .relaxed) { break }
                printErr(line())
            }
        }
        _ = ticker
    }

    func step(ok: Bool = true) {
        done.add(1, ordering: .relaxed)
        if !ok { failed.add(1, ordering: .relaxed) }
    }

    func line() -> String {
        let d = done.load(ordering: .relaxed)
        let f = failed.load(ordering: .relaxed)
        let secs = Double(monotonicNanos() - started) / 1e9
        let rate = secs > 0 ? Double(d) / secs : 0
        return "[setup] \(label) \(d)/\(total)  \(fmt(rate, 1))/s  \(fmt(secs, 1)) s" + (f > 0 ? "  \(f) failed" : "")
    }

    func finish() {
        finished.store(true, ordering: .relaxed)
        printErr(line())
    }
}

func fmt(_ v: Double, _ decimals: Int) -> String {
    if v.isNaN || v.isInfinite { return "-" }
    var p = 1.0
    for _ in 0..<decimals { p *= 10 }
    let r = (v * p).rounded() / p
    if decimals == 0 { return String(Int(r)) }
    let s = String(r)
    // Pad to the requested number of decimals.
    if let dot = s.firstIndex(of: ".") {
        let have = s.distance(from: dot, to: s.endIndex) - 1
        return have >= decimals ? s : s + String(repeating: "0", count: decimals - have)
    }
    return s
}
