import Transport
/// The rooms module of the client-server API: sync, events and history, creation,
/// aliases and the directory, membership, ephemeral events and the modules built on rooms,
/// registered in the order the specification presents them.
enum RoomEndpoints {
    static func register(_ routes: inout RouteBuilder) {
        Sync.register(&routes)
        LegacySync.register(&routes)
        RoomEvents.register(&routes)
        Messages.register(&routes)
        RoomCreation.register(&routes)
        Directory.register(&routes)
        Membership.register(&routes)
        Ephemeral.register(&routes)
        SendToDevice.register(&routes)
        Search.register(&routes)
        RoomUpgrade.register(&routes)
        SpaceHierarchy.register(&routes)
        Relations.register(&routes)
    }
}
