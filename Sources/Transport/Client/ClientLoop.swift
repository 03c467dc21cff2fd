import CLibUV
import CLLHTTP
import Glibc
import Synchronization

/// The libuv loop of an `HTTPClient`, on its own thread: every socket, timer and resolver
/// request of the client lives on it. Other threads hand work over with `execute`, which
/// queues under a lock and wakes the loop through an eventfd polled by `uv_poll` (as the
/// server's loops do, for libuv 1.44's spinning `uv_async_send`).
///
/// Threading: `uv`, `wakePoll` and everything run by `execute` belong to the loop thread.
final class ClientLoop: @unchecked Sendable {
    let uv: UnsafeMutablePointer<uv_loop_t>
    private let wakeFD: Int32
    private let wakePoll: UnsafeMutablePointer<uv_poll_t>
    private let queue = Mutex<(jobs: [@Sendable () -> Void], stopped: Bool)>(([], false))
    private var thread = pthread_t()

    init() throws {
        uv = .allocate(capacity: 1)
        guard uv_loop_init(uv) == 0 else { uv.deallocate(); throw HTTPClientError(.shutDown, "uv_loop_init failed") }
        wakeFD = myelin_eventfd()
        wakePoll = .allocate(capacity: 1)
        uv_poll_init(uv, wakePoll, wakeFD)
        wakePoll.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let box = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let loop = Unmanaged<ClientLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<ClientLoop>.fromOpaque(box).release()
            throw HTTPClientError(.shutDown, "cannot start the client thread")
        }
        pthread_detach(thread)
    }

    /// Runs `body` on the loop thread; false (and never runs it) once the loop stopped.
    @discardableResult
    func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        let accepted = queue.withLock { q -> Bool in
            guard !q.stopped else { return false }
            q.jobs.append(body)
            return true
        }
        if accepted {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
        return accepted
    }

    private func run() {
        "myelin-client".withCString { myelin_set_thread_name($0) }
        uv_poll_start(wakePoll, Int32(UV_READABLE.rawValue)) { handle, _, _ in
            Unmanaged<ClientLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue().drain()
        }
        uv_run(uv, UV_RUN_DEFAULT)
        uv_loop_close(uv)
        close(wakeFD)
    }

    private func drain() {
        var counter: UInt64 = 0
        _ = Glibc.read(wakeFD, &counter, 8)
        for _ in 0..<4 {
            let jobs = queue.withLock { q -> [@Sendable () -> Void] in
                let jobs = q.jobs
                q.jobs.removeAll()
                return jobs
            }
            if jobs.isEmpty { break }
            for job in jobs { job() }
        }
    }

    /// Loop thread: no more jobs; the loop ends once the caller closed its other handles.
    func stopAccepting() {
        let leftover = queue.withLock { q -> [@Sendable () -> Void] in
            q.stopped = true
            let jobs = q.jobs
            q.jobs.removeAll()
            return jobs
        }
        for job in leftover { job() }
        uv_close(UnsafeMutableRawPointer(wakePoll).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            handle?.deallocate()
        }
    }
}
