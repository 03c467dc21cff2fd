// myelin-crash-driver: the child process of the SIGKILL crash-safety test
// (Tests/ActorsTests/CrashSafetyTests.swift). It opens the store, creates the rooms it is
// asked for if they do not exist yet, then sends messages into every room as fast as they
// are acknowledged, printing one line per acknowledgement:
//
//     ack <room_id> <event_id> <stream_ordering> <depth>
//
// The test kills it at an arbitrary point, restarts it on the same data and checks that
// every acknowledged event is stored. Usage:
//
//     myelin-crash-driver sqlite <path> <rooms>
//     myelin-crash-driver postgres <conninfo> <rooms>
//
// It also hosts the events-persisted-per-second micro-benchmark (bench/ACTORS.md), which
// needs the same store and room wiring:
//
//     myelin-crash-driver bench sqlite|postgres <path|conninfo>
import Actors
import Foundation
import Matrix
import Persistence

// Each line is written whole with one write(2) on stdout, after the acknowledgement: a
// line the test sees is an event the store committed. (Blocking, in a test driver only.)
func emit(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(1, buffer.baseAddress! + offset, buffer.count - offset)
            if written <= 0 { exit(3) }
            offset += written
        }
    }
}

let arguments = CommandLine.arguments
if arguments.count == 4, arguments[1] == "bench" {
    try await runBenchmark(backend: arguments[2], target: arguments[3])
    exit(0)
}
guard arguments.count == 4, let roomCount = Int(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: myelin-crash-driver sqlite|postgres <path|conninfo> <rooms>\n".utf8))
    exit(2)
}
let configuration: DatabaseConfiguration = arguments[1] == "postgres"
    ? .postgres(conninfo: arguments[2], poolSize: 4)
    : .sqlite(path: arguments[2], readerCount: 2)

let database = try await Database.open(configuration)
let events = try await RoomContext.loadEventStream(database)
let signingKey = SigningKey.generate(version: "crash")
let context = RoomContext(database: database, events: events, serverName: try ServerName(parsing: "crash.example"),
                          signingKey: signingKey, recentEventsLimit: 16)
let rooms = Rooms(context: context, limits: RegistryLimits(maxResident: 10_000, idleTimeout: .seconds(600)))
let sender = try UserID(parsing: "@driver:crash.example")

var roomIDs = try await database.read { db in
    try db.query("SELECT room_id FROM rooms ORDER BY room_id").map { try RoomID(parsing: try $0.text(0)) }
}
while roomIDs.count < roomCount {
    let (roomID, _) = try await rooms.createRoom(creator: sender)
    roomIDs.append(roomID)
}
emit("ready \(roomIDs.count)")

await withThrowingTaskGroup(of: Void.self) { group in
    for roomID in roomIDs {
        group.addTask {
            var n = 0
            while true {
                n += 1
                let event = try await rooms.send(
                    EventDraft(type: "m.room.message", sender: sender, content: ["msgtype": "m.text", "body": .string("\(n)")]),
                    in: roomID)
                emit("ack \(roomID) \(event.eventID) \(event.streamOrdering) \(event.depth)")
            }
        }
    }
    do {
        try await group.waitForAll()
    } catch {
        emit("error \(error)")
        exit(1)
    }
}
