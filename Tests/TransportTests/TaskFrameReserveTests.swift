import Testing
@testable import Transport

/// The runner's frame reserve (`Connection.reserveTaskFrames`): the runtime's task allocator
/// reached through the C shim from tasks, whose frames allocated after it (deeper than the
/// reserve too) run as before, and from a synchronous function.
@Suite("Task frame reserve")
struct TaskFrameReserveTests {
    /// An async recursion whose frames hold a value across a suspension at every level.
    static func depth(_ level: Int) async -> Int {
        if level == 0 { return 0 }
        let mine = level &* 31
        await Task.yield()
        return mine &+ (await depth(level - 1))
    }

    @Test func framesAfterTheReserveRunAsBefore() async {
        let expected: Int = (1...200).reduce(0) { $0 &+ $1 &* 31 }
        let results = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    Connection.reserveTaskFrames()
                    return await Self.depth(200)
                }
            }
            var all: [Int] = []
            for await value in group { all.append(value) }
            return all
        }
        #expect(results == Array(repeating: expected, count: 8))
    }

    @Test func fromASynchronousFunction() {
        Connection.reserveTaskFrames()
        Connection.reserveTaskFrames()
    }
}
