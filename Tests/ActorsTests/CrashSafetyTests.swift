import Foundation
import Matrix
import Persistence
import Synchronization
import TestSupport
import Testing
@testable import Actors

/// Runs `myelin-crash-driver` (built next to the test bundle by `swift build --build-tests`)
/// sending into 20 rooms, SIGKILLs it mid-stream, restarts it on the same data, kills it
/// again, and checks the store against every acknowledgement the driver printed.
struct CrashSafetyTests {
    struct Ack: Equatable {
        var roomID: String
        var eventID: String
        var streamOrdering: Int64
        var depth: Int64
    }

    static var driverPath: String {
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        // On Linux the bundle is `.build/debug/MyelinPackageTests.xctest`, an executable;
        // on macOS the binary is inside `…xctest/Contents/MacOS/`.
        while directory.pathComponents.count > 1, !FileManager.default.fileExists(
            atPath: directory.appendingPathComponent("myelin-crash-driver").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("myelin-crash-driver").path
    }

    /// Starts the driver, waits for `acks` acknowledgements, SIGKILLs it, and returns every
    /// complete acknowledgement line it printed.
    static func runAndKill(_ arguments: [String], acks wanted: Int) async throws -> [Ack] {
        let child = try ChildProcess(path: driverPath, arguments: arguments)
        var buffer: [UInt8] = []
        var acks: [Ack] = []
        var killed = false
        // A driver that stops acknowledging for a minute is stuck: kill it and fail, rather
        // than wait for ever.
        readLoop: while true {
            switch try await blocking({ child.read(timeoutMs: 60_000) }) {
            case .endOfFile: break readLoop
            case .timedOut:
                Issue.record("the driver printed nothing for 60 s (\(acks.count) acknowledgements so far)")
                child.signal(SIGKILL)
                killed = true
                break readLoop
            case .bytes(let chunk):
                buffer += chunk
            }
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                let fields = line.split(separator: " ")
                if fields.first == "error" { Issue.record("driver: \(line)") }
                if fields.count == 5, fields[0] == "ack", let ordering = Int64(fields[3]), let depth = Int64(fields[4]) {
                    acks.append(Ack(roomID: String(fields[1]), eventID: String(fields[2]), streamOrdering: ordering, depth: depth))
                }
            }
            if !killed, acks.count >= wanted {
                child.signal(SIGKILL)
                killed = true
            }
        }
        if !killed { child.signal(SIGKILL) }
        let termination = try await blocking { child.wait() }
        #expect(termination == .signalled(SIGKILL), "the driver must die by SIGKILL, not exit")
        return acks
    }

    @Test(arguments: Backend.enabled)
    func acknowledgedEventsSurviveSIGKILL(_ backend: Backend) async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.driverPath), "build myelin-crash-driver first")
        try await withScratchDatabase(backend) { configuration in
            let arguments: [String]
            switch configuration {
            case let .sqlite(path, _, _): arguments = ["sqlite", path, "20"]
            case let .postgres(conninfo, _): arguments = ["postgres", conninfo, "20"]
            }
            // Migrate first so the two runs race on nothing but their own writes.
            await (try await Database.open(configuration)).close()
            let first = try await Self.runAndKill(arguments, acks: 400)
            // What a sync reader could see after the crash: everything up to the maximum.
            let afterCrash = try await Database.open(configuration)
            let (countAtCrash, maxAtCrash) = try await afterCrash.read { db in
                let row = try #require(try db.queryFirst("SELECT COUNT(*), MAX(stream_ordering) FROM events", []))
                return (try row.int(0), try row.int(1))
            }
            await afterCrash.close()
            let second = try await Self.runAndKill(arguments, acks: 200)
            #expect(first.count >= 400)
            #expect(second.count >= 200)

            let database = try await Database.open(configuration)
            let stored = try await database.read { db in
                try db.query("SELECT room_id, event_id, stream_ordering, depth, json FROM events ORDER BY stream_ordering")
            }
            let rooms = try await database.read { db in try db.query("SELECT room_id, room_version FROM rooms") }
            await database.close()
            #expect(rooms.count == 20)

            var storedByID: [String: (room: String, ordering: Int64, depth: Int64)] = [:]
            var perRoom: [String: [(eventID: String, ordering: Int64, depth: Int64, json: [UInt8])]] = [:]
            for row in stored {
                let room = try row.text(0), id = try row.text(1)
                let ordering = try row.int(2), depth = try row.int(3)
                #expect(storedByID[id] == nil, "event \(id) stored twice")
                storedByID[id] = (room, ordering, depth)
                perRoom[room, default: []].append((id, ordering, depth, try row.blob(4)))
            }
            // Every acknowledged event is there, as acknowledged.
            for ack in first + second {
                let row = storedByID[ack.eventID]
                #expect(row?.room == ack.roomID && row?.ordering == ack.streamOrdering && row?.depth == ack.depth,
                        "acknowledged \(ack.eventID) missing or changed")
            }
            // Per room: acknowledgements in stream order, and the stored events one chain.
            for run in [first, second] {
                for (_, acks) in Dictionary(grouping: run, by: \.roomID) {
                    #expect(acks.map(\.streamOrdering) == acks.map(\.streamOrdering).sorted())
                }
            }
            for (_, events) in perRoom {
                #expect(events.map(\.depth) == Array(1...Int64(events.count)), "depth chain has a hole")
                for (previous, event) in zip(events, events.dropFirst()) {
                    let pdu = try PDU(bytes: event.json, roomVersion: .recommendedDefault)
                    #expect(pdu.prevEvents.map(\.rawValue) == [previous.eventID])
                }
            }
            // Nothing committed after the restart sorts at or below what a reader could have
            // seen before it, so a reader holding a token from before the crash skips nothing.
            #expect(second.allSatisfy { $0.streamOrdering > maxAtCrash })
            #expect(stored.filter { (try? $0.int(2)).map { $0 <= maxAtCrash } ?? false }.count == Int(countAtCrash))
        }
    }
}
