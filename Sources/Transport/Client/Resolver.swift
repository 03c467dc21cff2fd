import CLibUV
import CResolv
import Glibc

/// Name resolution for the client, never on the cooperative pool: A/AAAA through
/// `uv_getaddrinfo` and SRV through libresolv's `res_nquery` in `uv_queue_work`, both on
/// libuv's thread pool, their results delivered on the client loop.
enum Resolver {
    /// Addresses kept from one resolution: enough for any real host.
    static let maxAddresses = 16

    /// Loop thread.
    static func resolve(host: String, port: Int, loop: ClientLoop,
                        _ done: @escaping (Result<[ResolvedAddress], HTTPClientError>) -> Void) {
        let request = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        request.pointee.data = Unmanaged.passRetained(ResolveCallback(done)).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        let rc = uv_getaddrinfo(loop.uv, request, { request, status, info in
            let callback = Unmanaged<ResolveCallback>.fromOpaque(request!.pointee.data).takeRetainedValue()
            request!.deallocate()
            defer { if let info { uv_freeaddrinfo(info) } }
            guard status == 0 else {
                callback.done(.failure(HTTPClientError(.resolutionFailed, String(cString: uv_strerror(status)))))
                return
            }
            callback.done(.success(Resolver.addresses(info)))
        }, host, String(port), &hints)
        if rc != 0 {
            let callback = Unmanaged<ResolveCallback>.fromOpaque(request.pointee.data).takeRetainedValue()
            request.deallocate()
            callback.done(.failure(HTTPClientError(.resolutionFailed, String(cString: uv_strerror(rc)))))
        }
    }

    fileprivate static func addresses(_ list: UnsafeMutablePointer<addrinfo>?) -> [ResolvedAddress] {
        var out: [ResolvedAddress] = []
        var node = list
        while let entry = node, out.count < maxAddresses {
            node = entry.pointee.ai_next
            guard let sa = entry.pointee.ai_addr else { continue }
            var storage = sockaddr_storage()
            let family = Int32(sa.pointee.sa_family)
            let ip: IPAddress?
            if family == AF_INET, entry.pointee.ai_addrlen >= MemoryLayout<sockaddr_in>.size {
                let v4 = UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in.self)
                ip = withUnsafeBytes(of: v4.sin_addr) { IPAddress(bytes: Array($0)) }
                withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: v4, as: sockaddr_in.self) }
            } else if family == AF_INET6, entry.pointee.ai_addrlen >= MemoryLayout<sockaddr_in6>.size {
                let v6 = UnsafeRawPointer(sa).loadUnaligned(as: sockaddr_in6.self)
                ip = withUnsafeBytes(of: v6.sin6_addr) { IPAddress(bytes: Array($0)) }
                withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: v6, as: sockaddr_in6.self) }
            } else {
                ip = nil
            }
            if let ip, !out.contains(where: { $0.ip == ip }) { out.append(ResolvedAddress(storage: storage, ip: ip)) }
        }
        return out
    }

    /// Loop thread: the SRV records of `name` (empty when there are none); the blocking
    /// query runs on libuv's thread pool.
    static func srv(_ name: String, loop: ClientLoop, _ done: @escaping (Result<[SRVRecord], HTTPClientError>) -> Void) {
        let work = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
        work.pointee.data = Unmanaged.passRetained(SRVQuery(name: name, done: done)).toOpaque()
        let rc = uv_queue_work(loop.uv, work, { work in
            let query = Unmanaged<SRVQuery>.fromOpaque(work!.pointee.data).takeUnretainedValue()
            var answer = [UInt8](repeating: 0, count: SRVAnswer.maxAnswerBytes)
            let length = query.name.withCString { myelin_query_srv($0, &answer, Int32(answer.count)) }
            query.length = Int(length)
            if length > 0 { query.answer = Array(answer[0..<min(Int(length), answer.count)]) }
        }, { work, status in
            let query = Unmanaged<SRVQuery>.fromOpaque(work!.pointee.data).takeRetainedValue()
            work!.deallocate()
            if status != 0 || query.length < 0 {
                query.done(.failure(HTTPClientError(.resolutionFailed, "SRV lookup of \(query.name) failed")))
            } else if query.length == 0 {
                query.done(.success([]))
            } else {
                do { query.done(.success(try SRVAnswer.parse(query.answer))) }
                catch { query.done(.failure(HTTPClientError(.resolutionFailed, "SRV answer for \(query.name): \(error)"))) }
            }
        })
        if rc != 0 {
            let query = Unmanaged<SRVQuery>.fromOpaque(work.pointee.data).takeRetainedValue()
            work.deallocate()
            query.done(.failure(HTTPClientError(.resolutionFailed, "cannot queue SRV lookup")))
        }
    }
}

private final class ResolveCallback {
    let done: (Result<[ResolvedAddress], HTTPClientError>) -> Void
    init(_ done: @escaping (Result<[ResolvedAddress], HTTPClientError>) -> Void) { self.done = done }
}

/// Handed to a thread-pool thread and back: the work callback writes `answer`/`length`
/// before libuv runs the after-work callback on the loop (libuv orders the two).
private final class SRVQuery: @unchecked Sendable {
    let name: String
    let done: (Result<[SRVRecord], HTTPClientError>) -> Void
    var answer: [UInt8] = []
    var length = 0
    init(name: String, done: @escaping (Result<[SRVRecord], HTTPClientError>) -> Void) {
        self.name = name
        self.done = done
    }
}
