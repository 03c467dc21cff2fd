import Persistence

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A few dedicated pthreads for blocking calls (file I/O, libvips) so that none of them runs
/// on Swift's cooperative pool or the event loops: one FIFO job queue under a mutex and a
/// condition (the same shape as the store's `ConnectionThread`), any thread takes any job.
/// With `maxQueued`, `run` throws `Full` rather than queue past that many waiting jobs.
/// The threads live as long as the process. Used as `MediaIOThreads` and by
/// `ThumbnailThreads`.
///
/// `@unchecked Sendable`: the queue is guarded by `mutex`/`condition`; jobs are `@Sendable`.
public final class BlockingThreadPool: @unchecked Sendable {
    public typealias Job = @Sendable () -> Void
    public struct Full: Error {}

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var jobs: [Job] = []
    private var head = 0
    private let maxQueued: Int

    /// - Parameter start: run once on each thread before it takes jobs (libvips' per-thread
    ///   set-up, for one).
    public init(threads: Int, maxQueued: Int = .max, start: (@Sendable () -> Void)? = nil) {
        self.maxQueued = max(1, maxQueued)
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for _ in 0..<max(1, threads) {
            DedicatedThread.start { [self] in
                start?()
                self.loop()
            }
        }
    }

    // Never reached while a thread waits (the threads hold the pool).
    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` on one of the threads and returns its result (or rethrows its error).
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let accepted = submit { continuation.resume(with: Result { try body() }) }
            if !accepted { continuation.resume(throwing: Full()) }
        }
    }

    private func submit(_ job: @escaping Job) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if jobs.count - head >= maxQueued { return false }
        jobs.append(job)
        pthread_cond_signal(condition)
        return true
    }

    private func loop() {
        while true {
            pthread_mutex_lock(mutex)
            while head == jobs.count { pthread_cond_wait(condition, mutex) }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head > 64 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            pthread_mutex_unlock(mutex)
            job()
        }
    }
}
