/// The small pool of dedicated pthreads on which every libvips call runs, so that decoding and
/// resizing never block the event loops or Swift's cooperative pool. Jobs wait in one FIFO
/// queue, bounded: past `maxQueued` waiting jobs `run` throws `ThumbnailError.busy`.
/// Owned by `Thumbnailer`.
struct ThumbnailThreads: Sendable {
    private let pool: BlockingThreadPool

    init(threads: Int, maxQueued: Int, start: @escaping @Sendable () -> Void) {
        pool = BlockingThreadPool(threads: threads, maxQueued: maxQueued, start: start)
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await pool.run(body)
        } catch is BlockingThreadPool.Full {
            throw ThumbnailError.busy
        }
    }
}
