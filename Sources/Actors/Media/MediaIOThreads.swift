#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A few dedicated pthreads that run the media code's blocking file calls (`write(2)` of an
/// upload's chunks, `fsync`, `rename`, `unlink`, directory walks) so that none of them runs
/// on Swift's cooperative pool: an upload's chunk write can wait on a slow disk for
/// milliseconds, and two such waits would stall every handler on a 2-core machine. The
/// same shape as the store's `ConnectionThread` (a job queue under a mutex and condition),
/// but any thread takes any job: an upload awaits each write before it submits the next,
/// so one upload's jobs never overlap and stay in order.
///
/// `@unchecked Sendable`: the job queue is guarded by `mutex`/`condition`; jobs are
/// `@Sendable`. One process-wide instance (`shared`); used by `MediaUploadActor` and
/// `MediaFileStore`'s async functions, and by other media code for its own blocking calls.
public final class MediaIOThreads: @unchecked Sendable {
    public typealias Job = @Sendable () -> Void

    /// The process's media I/O threads (two: reads and writes of the page cache are quick,
    /// a third thread would only add contention on this kind of machine).
    public static let shared = MediaIOThreads(count: 2)

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var jobs: [Job] = []
    private var jobHead = 0

    public init(count: Int) {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for _ in 0..<max(1, count) { Self.startThread { [self] in self.run() } }
    }

    deinit {
        // Never reached for `shared`; a test instance leaks its threads (they wait forever).
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` on one of the threads and returns its result (or rethrows its error).
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    private func submit(_ job: @escaping Job) {
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    private func run() {
        while true {
            pthread_mutex_lock(mutex)
            while jobHead == jobs.count { pthread_cond_wait(condition, mutex) }
            let job = jobs[jobHead]
            jobHead += 1
            if jobHead == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                jobHead = 0
            }
            pthread_mutex_unlock(mutex)
            job()
        }
    }

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    private static func startThread(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t?
        #endif
        let rc = pthread_create(&thread, nil, { argument in
            let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        #if canImport(Glibc)
        pthread_detach(thread)
        #else
        pthread_detach(thread!)
        #endif
    }
}
