import CLLHTTP
import Glibc

/// The threads request handlers run on: a `TaskExecutor` with a fixed number of workers
/// (`transport.workers`, one per core by default) and one queue. Handler tasks prefer it, so
/// a request costs one queue push from its loop; a push wakes a sleeping worker only when no
/// worker is awake, and an awake worker takes every queued job in one batch. Jobs never block
/// (nothing blocking runs on Swift's concurrency threads).
public final class WorkerPool: TaskExecutor, @unchecked Sendable {
    // `mutex` guards `jobs`, `sleeping` and `awake`; the threads are owned by the pool.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [UnownedJob] = []
    private var sleeping = 0
    private var awake = 0
    public let threadCount: Int
    /// Queue length from which a worker leaves half the queue to another worker.
    static let shareThreshold = 8

    public init(threads: Int) {
        threadCount = max(1, threads)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for index in 0..<threadCount {
            let box = Unmanaged.passRetained(WorkerStart(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            pthread_create(&thread, nil, { raw in
                let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                "myelin-worker-\(start.index)".withCString { myelin_set_thread_name($0) }
                start.pool.work()
                return nil
            }, box)
            pthread_detach(thread)
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        // From a loop thread (a new request's task), jobs are handed over once per loop
        // iteration instead of one lock round trip each.
        if let loop = WorkerPool.currentLoop, loop.server.workers === self {
            loop.workerJobs.append(unowned)
            return
        }
        enqueue(batch: CollectionOfOne(unowned))
    }

    func enqueue(batch: some Collection<UnownedJob>) {
        pthread_mutex_lock(mutex)
        jobs.append(contentsOf: batch)
        let wake = awake == 0 && sleeping > 0
        pthread_mutex_unlock(mutex)
        if wake { pthread_cond_signal(condition) }
    }

    // MARK: Thread-local roles

    private static let loopKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    private static let outboxKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The event loop whose thread this is, if any.
    static var currentLoop: EventLoop? {
        guard let raw = pthread_getspecific(loopKey) else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(raw).takeUnretainedValue()
    }

    static func setCurrentLoop(_ loop: EventLoop) {
        pthread_setspecific(loopKey, Unmanaged.passUnretained(loop).toOpaque())
    }

    /// The outbox of the worker whose thread this is, if any.
    static var currentOutbox: Outbox? {
        guard let raw = pthread_getspecific(outboxKey) else { return nil }
        return Unmanaged<Outbox>.fromOpaque(raw).takeUnretainedValue()
    }

    /// Jobs a worker queued for event loops while running its batch, delivered after it.
    final class Outbox {
        var entries: [(loop: EventLoop, jobs: [EventLoop.Job])] = []

        func add(_ job: EventLoop.Job, for loop: EventLoop) {
            for i in entries.indices where entries[i].loop === loop {
                entries[i].jobs.append(job)
                return
            }
            entries.append((loop, [job]))
        }

        func deliver() {
            guard !entries.isEmpty else { return }
            for entry in entries { entry.loop.push(contentsOf: entry.jobs) }
            entries.removeAll(keepingCapacity: true)
        }
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }

    private func work() {
        let executor = asUnownedTaskExecutor()
        var batch: [UnownedJob] = []
        let outbox = Outbox()
        pthread_setspecific(WorkerPool.outboxKey, Unmanaged.passRetained(outbox).toOpaque())
        pthread_mutex_lock(mutex)
        awake += 1
        while true {
            while jobs.isEmpty {
                awake -= 1
                sleeping += 1
                pthread_cond_wait(condition, mutex)
                sleeping -= 1
                awake += 1
            }
            // A long queue is shared: this worker takes the older half and wakes a sleeping
            // worker for the rest. A short one is taken whole, since waking a thread costs
            // more than running a few short jobs.
            var wakeAnother = false
            if jobs.count >= WorkerPool.shareThreshold && sleeping > 0 {
                let half = jobs.count / 2
                batch.append(contentsOf: jobs[..<half])
                jobs.removeFirst(half)
                wakeAnother = true
            } else {
                swap(&jobs, &batch)
            }
            pthread_mutex_unlock(mutex)
            if wakeAnother { pthread_cond_signal(condition) }
            for job in batch { job.runSynchronously(on: executor) }
            batch.removeAll(keepingCapacity: true)
            outbox.deliver()
            pthread_mutex_lock(mutex)
        }
    }
}

private final class WorkerStart {
    let pool: WorkerPool
    let index: Int
    init(pool: WorkerPool, index: Int) {
        self.pool = pool
        self.index = index
    }
}
