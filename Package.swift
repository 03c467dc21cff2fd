// swift-tools-version: 6.1
import PackageDescription

// Myelin: a Matrix homeserver. Module map and rules: ../shared/ARCHITECTURE.md.
// Dependencies point one way: App -> Actors -> Persistence -> Matrix, App -> Transport.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]
// The hot path (transport and request handling) skips dynamic exclusivity checks in release
// builds; debug builds and the tests keep them.
let hot: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Myelin",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "myelin", targets: ["App"]),
        .executable(name: "myelin-bench", targets: ["MyelinBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // System libraries (Debian -dev packages; `make deps` installs them).
        .systemLibrary(name: "CLibUV", path: "Sources/CLibUV", pkgConfig: "libuv",
                       providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium",
                       providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        // libvips (Debian's libvips42), opened with dlopen on the first thumbnail: a server
        // that never thumbnails does not map it and its ~80 dependencies (see CVips.h).
        .target(name: "CVips", path: "Sources/CVips", cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        // libpq (Debian's libpq5; its headers from libpq-dev, symlinked), opened with dlopen on
        // the first PostgreSQL connection: a server on SQLite does not map it and the ~20
        // libraries it pulls in (see CPostgres.h).
        .target(name: "CPostgres", path: "Sources/CPostgres", cSettings: [.unsafeFlags(["-O2"])],
                linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        // The system resolver (SRV lookups for federation server discovery).
        .systemLibrary(name: "CResolv", path: "Sources/CResolv"),
        // llhttp compiled from the C sources of Debian's node-llhttp (symlinks, never copies),
        // plus a small C shim that records a request's spans without a Swift call per callback.
        .target(name: "CLLHTTP", path: "Sources/CLLHTTP",
                cSettings: [.unsafeFlags(["-O2"])]),
        .target(name: "CTaskAllocator", path: "Sources/CTaskAllocator"),

        .target(name: "Transport",
                dependencies: ["CLibUV", "CLLHTTP", "COpenSSL", "CResolv", "CTaskAllocator",
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: hot),
        .target(name: "Matrix", dependencies: ["CSodium", "COpenSSL"], swiftSettings: strict),
        .target(name: "Persistence",
                dependencies: ["Matrix", "CSQLite", "CPostgres",
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: strict),
        .target(name: "Actors",
                dependencies: ["Matrix", "Persistence", "CVips",
                               .product(name: "Logging", package: "swift-log")],
                swiftSettings: strict),
        .executableTarget(name: "App",
                          dependencies: ["Transport", "Matrix", "Persistence", "Actors", "COpenSSL",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log")],
                          swiftSettings: strict),
        .executableTarget(name: "MyelinBench",
                          dependencies: ["Transport", "CLibUV",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Histogram", package: "hdrhistogram-swift")],
                          path: "bench/MyelinBench",
                          swiftSettings: strict),

        .executableTarget(name: "myelin-micro", dependencies: ["Matrix", "Transport"], path: "bench/Micro", swiftSettings: strict),
        .executableTarget(name: "myelin-session-bench", dependencies: ["Actors", "Persistence", "Matrix"], path: "bench/SessionAuth",
                          swiftSettings: strict),

        .target(name: "CTestSupport", path: "Tests/CTestSupport"),
        .target(name: "TestSupport", dependencies: ["CTestSupport", "Transport"], path: "Tests/TestSupport", swiftSettings: strict),
        .target(name: "StorageTestSupport", dependencies: ["Persistence"], path: "Tests/StorageTestSupport", swiftSettings: strict),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "MatrixTests", dependencies: ["Matrix"], swiftSettings: strict),
        .testTarget(name: "PersistenceTests", dependencies: ["Persistence", "CPostgres", "StorageTestSupport"], swiftSettings: strict),
        .testTarget(name: "ActorsTests", dependencies: ["Actors", "StorageTestSupport", "TestSupport"], swiftSettings: strict),
        // The child process of the SIGKILL crash-safety test in ActorsTests.
        .executableTarget(name: "myelin-crash-driver", dependencies: ["Actors"], path: "Tests/CrashDriver",
                          swiftSettings: strict),
        .testTarget(name: "AppTests", dependencies: ["App", "Transport", "Matrix", "Persistence", "TestSupport", "StorageTestSupport"], swiftSettings: strict),
    ]
)
