import Actors
import Foundation
import Matrix
import Persistence

/// Events persisted per second through `Rooms.send` (build, authorize, hash, sign, one
/// transaction per group commit), for one hot room with 100 concurrent senders and for
/// 1,000 rooms with one sender each. Prints wall time, events/s and process CPU per event.
func runBenchmark(backend: String, target: String) async throws {
    let configuration: DatabaseConfiguration = backend == "postgres"
        ? .postgres(conninfo: target, poolSize: 8)
        : .sqlite(path: target, readerCount: 2)
    let database = try await Database.open(configuration)
    let events = try await RoomContext.loadEventStream(database)
    let context = RoomContext(database: database, events: events, serverName: try ServerName(parsing: "bench.example"),
                              signingKey: SigningKey.generate(version: "bench"), recentEventsLimit: 128)
    let rooms = Rooms(context: context, limits: RegistryLimits(maxResident: 10_000, idleTimeout: .seconds(600)))
    let sender = try UserID(parsing: "@bench:bench.example")
    func draft(_ n: Int) -> EventDraft {
        EventDraft(type: "m.room.message", sender: sender, content: ["msgtype": "m.text", "body": .string("message \(n)")])
    }

    // One hot room, 100 concurrent senders, 50 events each.
    let (hot, _) = try await rooms.createRoom(creator: sender)
    try await measure("\(backend) one hot room, 100 senders × 50", events: 5_000) {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<100 {
                group.addTask { for n in 0..<50 { _ = try await rooms.send(draft(n), in: hot) } }
            }
            try await group.waitForAll()
        }
    }

    // 1,000 rooms, one sender each, 10 events each.
    var roomIDs: [RoomID] = []
    for _ in 0..<1_000 { roomIDs.append(try await rooms.createRoom(creator: sender).0) }
    try await measure("\(backend) 1,000 rooms, 1 sender × 10 each", events: 10_000) {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for roomID in roomIDs {
                group.addTask { for n in 0..<10 { _ = try await rooms.send(draft(n), in: roomID) } }
            }
            try await group.waitForAll()
        }
    }
    await rooms.registry.deactivateAll()
    await database.close()
}

private func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

private func measure(_ name: String, events: Int, _ body: () async throws -> Void) async throws {
    let clock = ContinuousClock()
    let cpuBefore = cpuSeconds()
    let elapsed = try await clock.measure { try await body() }
    let cpu = cpuSeconds() - cpuBefore
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let figures = String(format: "%d events in %.2f s = %.0f events/s, %.0f µs CPU/event",
                         events, seconds, Double(events) / seconds, cpu / Double(events) * 1e6)
    print("\(name): \(figures) (process CPU, all threads)")
}
