#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// CPU and memory of one process tree, read from /proc.
struct ProcessSample: Sendable {
    var cpuSeconds: Double   // utime + stime of the process and its live descendants
    var rssBytes: UInt64     // VmRSS summed over the same processes
    var hwmBytes: UInt64     // VmHWM of the root process (its own peak since it started)
    var processes: Int
    var alive: Bool
}

/// Samples each `--server-pid` (with its descendants, e.g. PostgreSQL's backends) once a
/// second: server CPU seconds over the run and peak RSS during it. Started and stopped by a
/// scenario around its measured phase.
final class ServerSampler: Sendable {
    let pids: [Int32]
    private let state = Mutex<(first: [ProcessSample], last: [ProcessSample], peakRSS: [UInt64], baselineRSS: [UInt64])>(([], [], [], []))
    private let running = Atomic<Bool>(false)

    init(pids: [Int]) { self.pids = pids.map { Int32($0) } }

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// Reads one process tree now.
    static func sample(_ pid: Int32) -> ProcessSample {
        let tree = [pid] + descendants(of: pid)
        var cpu = 0.0, rss: UInt64 = 0, hwm: UInt64 = 0, n = 0
        var alive = false
        for (i, p) in tree.enumerated() {
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            if i == 0 { alive = true }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // Fields after "(comm)": state=0 ppid=1 ... utime=11 stime=12.
            if fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) {
                cpu += (u + s) / ticksPerSecond
            }
            if let status = try? String(contentsOfFile: "/proc/\(p)/status", encoding: .utf8) {
                rss += kB(status, "VmRSS:")
                if i == 0 { hwm = kB(status, "VmHWM:") }
            }
            n += 1
        }
        return ProcessSample(cpuSeconds: cpu, rssBytes: rss, hwmBytes: hwm, processes: n, alive: alive)
    }

    private static func kB(_ status: String, _ key: String) -> UInt64 {
        guard let r = status.range(of: key) else { return 0 }
        let rest = status[r.upperBound...].prefix { $0 != "\n" }
        let digits = rest.filter(\.isNumber)
        return (UInt64(digits) ?? 0) * 1024
    }

    static func descendants(of root: Int32) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var parent: [Int32: Int32] = [:]
        for e in entries {
            guard let pid = Int32(e), pid != root,
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let pp = Int32(fields[1]) { parent[pid] = pp }
        }
        var out: [Int32] = []
        var frontier: Set<Int32> = [root]
        while !frontier.isEmpty {
            let children = parent.filter { frontier.contains($0.value) }.map(\.key)
            out += children
            frontier = Set(children)
        }
        return out
    }

    func start() {
        guard !pids.isEmpty else { return }
        let first = pids.map { Self.sample($0) }
        state.withLock { $0 = (first, first, first.map(\.rssBytes), first.map(\.rssBytes)) }
        running.store(true, ordering: .relaxed)
        Task.detached { [self] in
            while running.load(ordering: .relaxed) {
                try? await Task.sleep(for: .seconds(1))
                tick()
            }
        }
    }

    private func tick() {
        let now = pids.map { Self.sample($0) }
        state.withLock { s in
            for (i, sample) in now.enumerated() where sample.alive {
                s.last[i] = sample
                s.peakRSS[i] = max(s.peakRSS[i], sample.rssBytes)
            }
        }
    }

    /// Stops sampling and returns each tree's figures over the run.
    func stop() -> [ServerFigures] {
        guard !pids.isEmpty else { return [] }
        running.store(false, ordering: .relaxed)
        tick()
        return state.withLock { s in
            pids.indices.map { i in
                ServerFigures(pid: Int(pids[i]), cpuSeconds: s.last[i].cpuSeconds - s.first[i].cpuSeconds,
                              peakRSSBytes: s.peakRSS[i], baselineRSSBytes: s.baselineRSS[i],
                              endRSSBytes: s.last[i].rssBytes, hwmBytes: s.last[i].hwmBytes,
                              processes: s.last[i].processes, alive: s.last[i].alive)
            }
        }
    }

    /// Latest RSS of all trees together, bytes (for the per-interval samples).
    func currentRSS() -> UInt64 {
        state.withLock { $0.last.map(\.rssBytes).reduce(0, +) }
    }

    /// Latest CPU seconds of all trees together (for the running table).
    func currentCPU() -> Double {
        state.withLock { $0.last.map(\.cpuSeconds).reduce(0, +) - $0.first.map(\.cpuSeconds).reduce(0, +) }
    }
}

/// One server process tree's figures over the measured phase.
struct ServerFigures: Sendable {
    var pid: Int
    var cpuSeconds: Double
    var peakRSSBytes: UInt64
    var baselineRSSBytes: UInt64
    var endRSSBytes: UInt64
    var hwmBytes: UInt64
    var processes: Int
    var alive: Bool
}

/// The harness's own CPU (getrusage), so that a client-bound run is visible.
struct HarnessCPU {
    static func seconds() -> Double {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6
            + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
    }

    static func maxRSSBytes() -> UInt64 {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        return UInt64(ru.ru_maxrss) * 1024
    }
}

/// Raises RLIMIT_NOFILE to its hard limit (5,000 long-pollers need 5,000+ sockets).
func raiseFileLimit() -> UInt64 {
    var rl = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    }
    return UInt64(rl.rlim_cur)
}
