import KubeSim
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SluiceCore

/// TLS for the simulator: its certificate and key (PEM), and, when `clientCAPEM` is set,
/// client certificates signed by that CA are required (and authenticate the request, as
/// with the real API server).
public struct SimTLS: Sendable {
    public var certificatePEM: [UInt8]
    public var keyPEM: [UInt8]
    public var clientCAPEM: [UInt8]?

    public init(certificatePEM: [UInt8], keyPEM: [UInt8], clientCAPEM: [UInt8]? = nil) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.clientCAPEM = clientCAPEM
    }

    func context() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(certificatePEM).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: keyPEM, format: .pem)))
        if let clientCAPEM {
            config.certificateVerification = .noHostnameVerification
            config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(clientCAPEM))
        }
        return try NIOSSLContext(configuration: config)
    }
}

/// The simulator's HTTP front: discovery, and list/watch/get/create/update/patch/delete for
/// every resource type, in the Kubernetes API's JSON shapes.
public final class SimHTTPServer: Sendable {
    /// A kubeconfig for a simulator at `url` (context `kube-sim`, namespace `default`),
    /// sending `token`; with `certificateAuthorityData` (base64 PEM) it trusts that CA.
    public static func kubeconfig(url: String, token: String = "kube-sim", certificateAuthorityData: String? = nil) -> String {
        let ca = certificateAuthorityData.map { ", certificate-authority-data: \"\($0)\"" } ?? ""
        return """
            apiVersion: v1
            kind: Config
            current-context: kube-sim
            clusters: [{name: kube-sim, cluster: {server: "\(url)"\(ca)}}]
            users: [{name: kube-sim, user: {token: "\(token)"}}]
            contexts: [{name: kube-sim, context: {cluster: kube-sim, user: kube-sim, namespace: default}}]
            """
    }

    public let state: SimState
    private let channel: Channel
    private let connections: NIOLockedValueBox<[ObjectIdentifier: Channel]>
    public var port: Int { channel.localAddress?.port ?? 0 }
    /// How often a watch that asked for bookmarks gets one.
    public let bookmarkInterval: TimeAmount

    public static func start(
        state: SimState, host: String = "127.0.0.1", port: Int = 0, group: EventLoopGroup, bookmarkInterval: TimeAmount = .seconds(1),
        controlPlane: SimControlPlane? = nil, tls: SimTLS? = nil
    ) async throws -> SimHTTPServer {
        let controlPlane = controlPlane ?? SimControlPlane(state: state)
        let sslContext = try tls.map { try $0.context() }
        let clientCertificates = tls?.clientCAPEM != nil
        let connections = NIOLockedValueBox<[ObjectIdentifier: Channel]>([:])
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                connections.withLockedValue { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in _ = connections.withLockedValue { $0.removeValue(forKey: id) } }
                return channel.eventLoop.makeCompletedFuture {
                    if let sslContext { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        SimRequestHandler(
                            state: state, controlPlane: controlPlane, bookmarkInterval: bookmarkInterval,
                            clientCertificateVerified: clientCertificates))
                }
            }
            .bind(host: host, port: port).get()
        return SimHTTPServer(state: state, channel: channel, connections: connections, bookmarkInterval: bookmarkInterval)
    }

    private init(state: SimState, channel: Channel, connections: NIOLockedValueBox<[ObjectIdentifier: Channel]>, bookmarkInterval: TimeAmount) {
        self.state = state
        self.channel = channel
        self.connections = connections
        self.bookmarkInterval = bookmarkInterval
    }

    /// Stops listening and closes every connection, watches included, as a restarting API
    /// server would.
    public func stop() async {
        try? await channel.close()
        for c in connections.withLockedValue({ Array($0.values) }) { try? await c.close() }
    }
}

/// The route of a resource request: /api/v1[/namespaces/NS]/PLURAL[/NAME] or
/// /apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME].
struct ResourcePath {
    var type: ResourceType
    var namespace: String?
    var name: String?
    /// `status` for `/NAME/status`.
    var subresource: String?

    static func parse(_ parts: [Substring], resources: [ResourceType]) -> ResourcePath? {
        var group = "", version = ""
        var rest: ArraySlice<Substring>
        if parts.first == "api", parts.count >= 2 {
            version = String(parts[1])
            rest = parts[2...]
        } else if parts.first == "apis", parts.count >= 3 {
            group = String(parts[1])
            version = String(parts[2])
            rest = parts[3...]
        } else {
            return nil
        }
        var namespace: String? = nil
        if rest.first == "namespaces", rest.count >= 3 {
            namespace = String(rest[rest.startIndex + 1])
            rest = rest.dropFirst(2)
        }
        guard let plural = rest.first, let type = resources.first(where: { $0.group == group && $0.version == version && $0.plural == plural })
        else { return nil }
        rest = rest.dropFirst()
        guard rest.count <= 2 else { return nil }
        if rest.count == 2 {
            guard rest.last == "status", type.hasStatusSubresource else { return nil }
            return ResourcePath(type: type, namespace: namespace, name: String(rest[rest.startIndex]), subresource: "status")
        }
        return ResourcePath(type: type, namespace: namespace, name: rest.first.map(String.init))
    }
}

final class SimRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let state: SimState
    let controlPlane: SimControlPlane
    let bookmarkInterval: TimeAmount
    let clientCertificateVerified: Bool
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var watching = false

    init(state: SimState, controlPlane: SimControlPlane, bookmarkInterval: TimeAmount, clientCertificateVerified: Bool) {
        self.state = state
        self.controlPlane = controlPlane
        self.bookmarkInterval = bookmarkInterval
        self.clientCertificateVerified = clientCertificateVerified
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
        case .body(let b):
            body += b.readableBytesView
        case .end:
            guard let h = head else { return }
            head = nil
            handle(h, context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if watching { state.removeWatcher(ObjectIdentifier(self)) }
        context.fireChannelInactive()
    }

    private func respond(_ status: Int, _ json: JSONValue, _ context: ChannelHandlerContext, keepAlive: Bool) {
        var bytes = json.serializedBytes()
        bytes.append(UInt8(ascii: "\n"))
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(bytes.count))])
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    static func status(_ e: APIError) -> JSONValue {
        ["kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure", "message": .string(e.message),
         "reason": .string(e.reason), "code": .int(Int64(e.code))]
    }

    private func handle(_ h: HTTPRequestHead, _ context: ChannelHandlerContext) {
        let (path, query) = Self.split(h.uri)
        let parts = path.split(separator: "/")
        let keepAlive = h.isKeepAlive
        guard state.authorized(h.headers.first(name: "authorization"), clientCertificateVerified: clientCertificateVerified) else {
            respond(401, Self.status(APIError(code: 401, reason: "Unauthorized", message: "Unauthorized")), context, keepAlive: keepAlive)
            return
        }
        if h.method == .POST, parts.first == "sim", parts.count == 2 {
            // Scenario endpoints: POST /sim/scale?namespace=N&service=S&replicas=R[&port=P]
            // and POST /sim/rollout?namespace=N&service=S[&batch=B].
            do throws(APIError) {
                let ns = query["namespace"] ?? "default"
                guard let service = query["service"] else { throw APIError(code: 400, reason: "BadRequest", message: "service= is required") }
                switch parts[1] {
                case "scale":
                    guard let replicas = query["replicas"].flatMap({ Int($0) }), replicas >= 0 else {
                        throw APIError(code: 400, reason: "BadRequest", message: "replicas= must be an integer >= 0")
                    }
                    let port = query["port"].flatMap { Int($0) } ?? 8080
                    try controlPlane.scale(namespace: ns, service: service, replicas: replicas, ports: [SimServicePort(name: "http", port: port)])
                case "rollout":
                    try controlPlane.rollingUpdate(namespace: ns, service: service, batch: query["batch"].flatMap { Int($0) } ?? 1)
                default:
                    throw APIError(code: 404, reason: "NotFound", message: "unknown scenario \(parts[1])")
                }
                respond(200, ["resourceVersion": .string(String(state.currentResourceVersion))], context, keepAlive: keepAlive)
            } catch {
                respond(error.code, Self.status(error), context, keepAlive: keepAlive)
            }
            return
        }
        if h.method == .GET, let doc = discovery(parts) {
            respond(200, doc, context, keepAlive: keepAlive)
            return
        }
        guard let rp = ResourcePath.parse(parts, resources: state.resources) else {
            respond(404, Self.status(APIError(code: 404, reason: "NotFound", message: "the server could not find the requested resource")), context, keepAlive: keepAlive)
            return
        }
        do throws(APIError) {
            if rp.subresource == "status", let name = rp.name {
                let object: JSONValue
                switch h.method {
                case .GET:
                    object = try state.read { s throws(APIError) in try s.get(rp.type, namespace: rp.namespace, name: name) }
                case .PUT:
                    let body = try Self.parse(body)
                    object = try state.write { s throws(APIError) in try s.updateStatus(rp.type, namespace: rp.namespace, name: name, body) }
                case .PATCH:
                    try Self.requireMergePatch(h)
                    let patch = try Self.parse(body)
                    object = try state.write { s throws(APIError) in try s.mergePatchStatus(rp.type, namespace: rp.namespace, name: name, patch) }
                default:
                    throw APIError(code: 405, reason: "MethodNotAllowed", message: "\(h.method.rawValue) is not supported on \(path)")
                }
                respond(200, object, context, keepAlive: keepAlive)
                return
            }
            switch (h.method, rp.name) {
            case (.GET, nil) where query["watch"] == "1" || query["watch"] == "true":
                try startWatch(rp, query, context)
            case (.GET, nil):
                let selector = try Self.selector(query)
                let fields = try Self.fields(query, rp.type)
                let limit = query["limit"].flatMap { Int($0) }
                let page = try state.read { s throws(APIError) in
                    try s.list(rp.type, namespace: rp.namespace, selector: selector, fields: fields, limit: limit, continue: query["continue"])
                }
                var meta: [String: JSONValue] = ["resourceVersion": .string(String(page.resourceVersion))]
                if let c = page.continue { meta["continue"] = .string(c) }
                if Self.wantsTable(h), let table = Self.table(rp.type, page.items) {
                    respond(200, table, context, keepAlive: keepAlive)
                    return
                }
                respond(200, ["kind": .string(rp.type.kind + "List"), "apiVersion": .string(rp.type.apiVersion), "metadata": .object(meta), "items": .array(page.items)], context, keepAlive: keepAlive)
            case (.GET, let name?):
                let object = try state.read { s throws(APIError) in try s.get(rp.type, namespace: rp.namespace, name: name) }
                if Self.wantsTable(h), let table = Self.table(rp.type, [object]) {
                    respond(200, table, context, keepAlive: keepAlive)
                    return
                }
                respond(200, object, context, keepAlive: keepAlive)
            case (.POST, nil):
                let object = try Self.parse(body)
                let created = try state.write { s throws(APIError) in try s.create(rp.type, namespace: rp.namespace, object) }
                respond(201, created, context, keepAlive: keepAlive)
            case (.PUT, let name?):
                let object = try Self.parse(body)
                respond(200, try state.write { s throws(APIError) in try s.update(rp.type, namespace: rp.namespace, name: name, object) }, context, keepAlive: keepAlive)
            case (.PATCH, let name?):
                let patch = try Self.parse(body)
                if (h.headers.first(name: "content-type") ?? "").hasPrefix("application/json-patch+json") {
                    respond(200, try state.write { s throws(APIError) in try s.jsonPatch(rp.type, namespace: rp.namespace, name: name, patch) }, context, keepAlive: keepAlive)
                    return
                }
                try Self.requireMergePatch(h)
                respond(200, try state.write { s throws(APIError) in try s.mergePatch(rp.type, namespace: rp.namespace, name: name, patch) }, context, keepAlive: keepAlive)
            case (.DELETE, let name?):
                respond(200, try state.write { s throws(APIError) in try s.delete(rp.type, namespace: rp.namespace, name: name) }, context, keepAlive: keepAlive)
            default:
                throw APIError(code: 405, reason: "MethodNotAllowed", message: "\(h.method.rawValue) is not supported on \(path)")
            }
        } catch {
            respond(error.code, Self.status(error), context, keepAlive: keepAlive)
        }
    }

    /// kubectl asks for server-side printing (`Accept: application/json;as=Table;...`).
    static func wantsTable(_ h: HTTPRequestHead) -> Bool {
        (h.headers.first(name: "accept") ?? "").contains("as=Table")
    }

    /// A meta.k8s.io/v1 Table for the kinds whose columns kubectl users look at (Ingress:
    /// NAME, CLASS, HOSTS, ADDRESS, PORTS, AGE, as the API server prints them); nil for the
    /// others, which are then sent as objects and printed by name.
    static func table(_ type: ResourceType, _ items: [JSONValue]) -> JSONValue? {
        guard type.plural == "ingresses", type.group == "networking.k8s.io" else { return nil }
        func column(_ name: String, _ kind: String = "string", priority: Int64 = 0) -> JSONValue {
            ["name": .string(name), "type": .string(kind), "format": name == "Name" ? "name" : "", "description": "", "priority": .int(priority)]
        }
        let rows: [JSONValue] = items.map { item in
            let spec = item["spec"]
            let hosts = (spec?["rules"]?.arrayValue ?? []).compactMap { $0["host"]?.stringValue }
            let lb = item["status"]?["loadBalancer"]?["ingress"]?.arrayValue ?? []
            let addresses = lb.compactMap { $0["ip"]?.stringValue ?? $0["hostname"]?.stringValue }
            let ports = (spec?["tls"]?.arrayValue ?? []).isEmpty ? "80" : "80, 443"
            return [
                "cells": [
                    .string(item["metadata"]?["name"]?.stringValue ?? ""), .string(spec?["ingressClassName"]?.stringValue ?? "<none>"),
                    .string(hosts.isEmpty ? "*" : hosts.joined(separator: ",")), .string(addresses.joined(separator: ",")), .string(ports),
                    .string("<unknown>"),
                ],
                "object": ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"] ?? [:]],
            ]
        }
        return [
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": [:],
            "columnDefinitions": [column("Name"), column("Class"), column("Hosts"), column("Address"), column("Ports"), column("Age")],
            "rows": .array(rows),
        ]
    }

    static func requireMergePatch(_ h: HTTPRequestHead) throws(APIError) {
        let contentType = h.headers.first(name: "content-type") ?? ""
        guard contentType.hasPrefix("application/merge-patch+json") || contentType.hasPrefix("application/strategic-merge-patch+json") else {
            throw APIError(
                code: 415, reason: "UnsupportedMediaType",
                message: "the simulator takes merge patches (application/merge-patch+json) and JSON patches (application/json-patch+json)")
        }
    }

    private func startWatch(_ rp: ResourcePath, _ query: [String: String], _ context: ChannelHandlerContext) throws(APIError) {
        let selector = try Self.selector(query)
        let fields = try Self.fields(query, rp.type)
        // WatchList: the current state as ADDED events, then a bookmark marking its end.
        let initialEvents = query["sendInitialEvents"] == "true"
        if initialEvents {
            guard state.watchListEnabled else {
                throw APIError(code: 422, reason: "Invalid", message: "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
            }
            guard query["resourceVersionMatch"] == "NotOlderThan", query["allowWatchBookmarks"] == "true" else {
                throw APIError(code: 422, reason: "Invalid", message: "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true")
            }
        }
        let since: Int64?
        if !initialEvents, let rv = query["resourceVersion"], !rv.isEmpty, rv != "0" {
            guard let n = Int64(rv) else { throw APIError(code: 400, reason: "BadRequest", message: "invalid resourceVersion \"\(rv)\"") }
            since = n
        } else {
            since = nil
        }
        let headers = HTTPHeaders([("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        watching = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let push: @Sendable (WatchEvent) -> Void = { event in
            eventLoop.execute {
                let (me, ctx) = loopBound.value
                me.send(["type": .string(event.type.rawValue), "object": event.object], ctx)
            }
        }
        let missed: [WatchEvent]
        let startRV: Int64
        do throws(APIError) {
            (missed, startRV) = try state.addWatcher(
                id: ObjectIdentifier(self), type: rp.type, namespace: rp.namespace, selector: selector, fields: fields, since: since, push: push)
        } catch {
            // As the real server does: a 200 stream with one ERROR event, then the end.
            send(["type": "ERROR", "object": Self.status(error)], context)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in }
            watching = false
            return
        }
        for e in missed { send(["type": .string(e.type.rawValue), "object": e.object], context) }
        if initialEvents {
            send(
                ["type": "BOOKMARK", "object": [
                    "kind": .string(rp.type.kind), "apiVersion": .string(rp.type.apiVersion),
                    "metadata": ["resourceVersion": .string(String(startRV)), "annotations": ["k8s.io/initial-events-end": "true"]],
                ]], context)
        }
        if query["allowWatchBookmarks"] == "true" { scheduleBookmark(rp, context) }
        if let timeout = query["timeoutSeconds"].flatMap({ Int64($0) }), timeout > 0 {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .seconds(timeout)) {
                bound.value.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
            }
        }
    }

    private func scheduleBookmark(_ rp: ResourcePath, _ context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let state = self.state
        context.eventLoop.scheduleTask(in: bookmarkInterval) {
            let (me, ctx) = bound.value
            guard me.watching, ctx.channel.isActive else { return }
            let rv = state.currentResourceVersion
            me.send(["type": "BOOKMARK", "object": ["kind": .string(rp.type.kind), "apiVersion": .string(rp.type.apiVersion), "metadata": ["resourceVersion": .string(String(rv))]]], ctx)
            me.scheduleBookmark(rp, ctx)
        }
    }

    private func send(_ event: JSONValue, _ context: ChannelHandlerContext) {
        var bytes = event.serializedBytes()
        bytes.append(UInt8(ascii: "\n"))
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: bytes)))), promise: nil)
    }

    private func discovery(_ parts: [Substring]) -> JSONValue? {
        let resources = state.resources
        func resourceList(_ group: String, _ version: String) -> JSONValue {
            let list = resources.filter { $0.group == group && $0.version == version }.flatMap { r -> [JSONValue] in
                let main: JSONValue = [
                    "name": .string(r.plural), "singularName": .string(r.kind.lowercased()), "namespaced": .bool(r.namespaced), "kind": .string(r.kind),
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": .array(r.shortNames.map { .string($0) }),
                ]
                guard r.hasStatusSubresource else { return [main] }
                return [main, ["name": .string("\(r.plural)/status"), "singularName": "", "namespaced": .bool(r.namespaced), "kind": .string(r.kind),
                               "verbs": ["get", "patch", "update"]]]
            }
            return ["kind": "APIResourceList", "apiVersion": "v1", "groupVersion": .string(group.isEmpty ? version : "\(group)/\(version)"), "resources": .array(list)]
        }
        if parts.count >= 2, parts[0] == "openapi", parts[1] == "v3" { return openAPIv3(Array(parts.dropFirst(2))) }
        switch parts.count {
        case 1 where parts[0] == "version":
            return ["major": "1", "minor": "32", "gitVersion": "v1.32.0-sluice-kube-sim", "platform": "linux/amd64"]
        case 1 where parts[0] == "api":
            return ["kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"]]]
        case 1 where parts[0] == "apis":
            var groups: [String: [String]] = [:]
            for r in resources where !r.group.isEmpty { groups[r.group, default: []].append(r.version) }
            let list = groups.keys.sorted().map { g -> JSONValue in
                let versions = Array(Set(groups[g]!)).sorted().map { v -> JSONValue in ["groupVersion": .string("\(g)/\(v)"), "version": .string(v)] }
                return ["name": .string(g), "versions": .array(versions), "preferredVersion": versions[0]]
            }
            return ["kind": "APIGroupList", "apiVersion": "v1", "groups": .array(list)]
        case 2 where parts[0] == "api":
            return resourceList("", String(parts[1]))
        case 3 where parts[0] == "apis":
            return resourceList(String(parts[1]), String(parts[2]))
        default:
            return nil
        }
    }

    /// OpenAPI v3, as much as kubectl needs: the index of group-versions, and per
    /// group-version the object paths whose PATCH declares the `fieldValidation` parameter
    /// with the kind's `x-kubernetes-group-version-kind`. kubectl then leaves validation to
    /// the server (`fieldValidation=Strict`) instead of downloading schemas. The simulator
    /// checks an object's shape only as far as its own logic needs (metadata.name, JSON).
    private func openAPIv3(_ rest: [Substring]) -> JSONValue? {
        let resources = state.resources
        var groupVersions: [String: [ResourceType]] = [:]
        for r in resources { groupVersions[r.group.isEmpty ? "api/\(r.version)" : "apis/\(r.group)/\(r.version)", default: []].append(r) }
        if rest.isEmpty {
            var paths: [String: JSONValue] = [:]
            for gv in groupVersions.keys { paths[gv] = ["serverRelativeURL": .string("/openapi/v3/\(gv)?hash=kube-sim")] }
            return ["paths": .object(paths)]
        }
        guard let types = groupVersions[rest.joined(separator: "/")] else { return nil }
        var paths: [String: JSONValue] = [:]
        let fieldValidation: JSONValue = ["name": "fieldValidation", "in": "query", "schema": ["type": "string"]]
        for r in types {
            let gvk: JSONValue = ["group": .string(r.group), "version": .string(r.version), "kind": .string(r.kind)]
            let base = r.group.isEmpty ? "/api/\(r.version)" : "/apis/\(r.group)/\(r.version)"
            let collection = r.namespaced ? "\(base)/namespaces/{namespace}/\(r.plural)" : "\(base)/\(r.plural)"
            let op: JSONValue = ["x-kubernetes-group-version-kind": gvk, "parameters": [fieldValidation], "responses": ["200": ["description": "OK"]]]
            paths[collection] = ["post": op]
            paths["\(collection)/{name}"] = ["put": op, "patch": op]
        }
        return ["openapi": "3.0.0", "info": ["title": "Kubernetes (kube-sim)", "version": "v1.32.0"], "paths": .object(paths), "components": ["schemas": [:]]]
    }

    static func split(_ uri: String) -> (String, [String: String]) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        return (String(uri[..<q]), PercentDecoding.queryParameters(uri[uri.index(after: q)...]))
    }

    static func selector(_ query: [String: String]) throws(APIError) -> LabelSelector {
        guard let text = query["labelSelector"], !text.isEmpty else { return .everything }
        do throws(LabelSelector.ParseError) {
            return try LabelSelector(text)
        } catch {
            throw APIError(code: 400, reason: "BadRequest", message: error.description)
        }
    }

    static func fields(_ query: [String: String], _ type: ResourceType) throws(APIError) -> FieldSelector {
        guard let text = query["fieldSelector"], !text.isEmpty else { return .everything }
        do throws(LabelSelector.ParseError) {
            return try FieldSelector(text, allowed: type.selectableFields)
        } catch {
            throw APIError(code: 400, reason: "BadRequest", message: error.description)
        }
    }

    static func parse(_ body: [UInt8]) throws(APIError) -> JSONValue {
        do {
            return try JSONValue.parse(body)
        } catch {
            throw APIError(code: 400, reason: "BadRequest", message: "the body is not JSON: \(error)")
        }
    }
}
