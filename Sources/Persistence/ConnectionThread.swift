#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dedicated pthread that owns one database connection and runs jobs on it, one at a time,
/// in the order they were submitted. This is how blocking C calls (`sqlite3_step`, `PQexec`)
/// stay off Swift's cooperative pool: async callers enqueue a job and suspend on a
/// continuation that the job resumes from this thread.
///
/// `ConnectionPool` creates one per connection and decides which jobs go where.
///
/// `@unchecked Sendable`: the connection is created, used and closed only on this thread
/// (a local of `run()`, never stored); the job queue is guarded by `mutex`/`condition`.
final class ConnectionThread<Connection>: @unchecked Sendable {
    typealias Job = @Sendable (Connection) -> Void

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var jobs: [Job] = []
    private var jobHead = 0
    private var stopping = false
    private var exited = false
    private var onStopped: [@Sendable () -> Void] = []

    /// Starts the thread. `connect` runs on the new thread; its result or error is handed to
    /// `ready` (also on the new thread). On failure the thread exits.
    init(connect: @escaping @Sendable () throws -> Connection,
         close: @escaping @Sendable (Connection) -> Void,
         ready: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        DedicatedThread.start { [self] in
            self.run(connect: connect, close: close, ready: ready)
        }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Queues a job. Returns false (and drops the job) when the thread is stopping.
    @discardableResult
    func submit(_ job: @escaping Job) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if stopping { return false }
        jobs.append(job)
        pthread_cond_signal(condition)
        return true
    }

    /// Asks the thread to finish the jobs already queued, close its connection and exit;
    /// `done` runs once it has (at once if it already exited).
    func stop(_ done: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        if exited {
            pthread_mutex_unlock(mutex)
            done()
            return
        }
        stopping = true
        onStopped.append(done)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    private func exit() {
        pthread_mutex_lock(mutex)
        stopping = true
        exited = true
        jobs.removeAll()
        jobHead = 0
        let callbacks = onStopped
        onStopped = []
        pthread_mutex_unlock(mutex)
        for callback in callbacks { callback() }
    }

    private func run(connect: @Sendable () throws -> Connection,
                     close: @Sendable (Connection) -> Void,
                     ready: @Sendable (Result<Void, any Error>) -> Void) {
        let connection: Connection
        do {
            connection = try connect()
        } catch {
            ready(.failure(error))
            exit()
            return
        }
        ready(.success(()))
        while true {
            pthread_mutex_lock(mutex)
            while jobHead == jobs.count && !stopping {
                pthread_cond_wait(condition, mutex)
            }
            if jobHead == jobs.count {
                // Stopping, and every queued job has run.
                pthread_mutex_unlock(mutex)
                close(connection)
                exit()
                return
            }
            let job = jobs[jobHead]
            jobHead += 1
            if jobHead == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                jobHead = 0
            }
            pthread_mutex_unlock(mutex)
            job(connection)
        }
    }
}

/// Starts detached pthreads running a Swift closure. The C entry point captures nothing;
/// the closure rides in the argument pointer. Also the media code's thread pools
/// (`BlockingThreadPool` in Actors).
public enum DedicatedThread {
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    public static func start(_ body: @escaping @Sendable () -> Void) {
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
