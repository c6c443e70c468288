import SluiceCore

/// JSON Schemas of the resources, as `GET /apisix/admin/schema/{resource}` and the control
/// API's `/v1/schema` show them. They describe what the validators in SluiceCore accept.
public enum Schemas {
    static let checksSchema = #""checks":{"type":"object","properties":{"active":{"type":"object","properties":{"type":{"type":"string","enum":["http","https","tcp"],"default":"http"},"timeout":{"type":"number","exclusiveMinimum":0,"maximum":86400,"default":1},"concurrency":{"type":"integer","minimum":1,"maximum":2147483647,"default":10},"http_path":{"type":"string","default":"/"},"host":{"type":"string"},"port":{"type":"integer","minimum":1,"maximum":65535},"https_verify_certificate":{"type":"boolean","default":true},"req_headers":{"type":"array","minItems":1,"items":{"type":"string"}},"healthy":{"type":"object","properties":{"interval":{"type":"integer","minimum":1,"default":1},"successes":{"type":"integer","minimum":1,"maximum":254},"http_statuses":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"integer","minimum":200,"maximum":599}}}},"unhealthy":{"type":"object","properties":{"interval":{"type":"integer","minimum":1,"default":1},"http_failures":{"type":"integer","minimum":1,"maximum":254},"tcp_failures":{"type":"integer","minimum":1,"maximum":254},"timeouts":{"type":"integer","minimum":1,"maximum":254},"http_statuses":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"integer","minimum":200,"maximum":599}}}}}},"passive":{"type":"object","properties":{"type":{"type":"string","enum":["http","https","tcp"],"default":"http"},"healthy":{"type":"object","properties":{"successes":{"type":"integer","minimum":0,"maximum":254},"http_statuses":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"integer","minimum":200,"maximum":599}}}},"unhealthy":{"type":"object","properties":{"http_failures":{"type":"integer","minimum":0,"maximum":254},"tcp_failures":{"type":"integer","minimum":0,"maximum":254},"timeouts":{"type":"integer","minimum":0,"maximum":254},"http_statuses":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"integer","minimum":200,"maximum":599}}}}}}},"required":["active"]},"#
    static let id = #"{"anyOf":[{"type":"string","pattern":"^[a-zA-Z0-9-_.]{1,64}$"},{"type":"integer","minimum":1}]}"#
    static let labels = #"{"type":"object","additionalProperties":{"type":"string","minLength":1,"maxLength":256}}"#
    static let timeout = #"{"type":"object","properties":{"connect":{"type":"number","exclusiveMinimum":0},"send":{"type":"number","exclusiveMinimum":0},"read":{"type":"number","exclusiveMinimum":0}},"required":["connect","send","read"],"additionalProperties":false}"#
    static let plugins = #"{"type":"object","description":"plugin name to config; each config is checked against GET /apisix/admin/schema/plugins/{name}"}"#
    static let hosts = #"{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"string","pattern":"^\\*?[0-9a-zA-Z-._\\[\\]:]+$"}}"#

    static let upstream = """
        {"type":"object","properties":{
          "id":\(id),
          "type":{"type":"string","enum":["roundrobin","chash","least_conn","ewma"],"default":"roundrobin"},
          "nodes":{"anyOf":[
            {"type":"object","description":"host:port to weight","additionalProperties":{"type":"integer","minimum":0}},
            {"type":"array","items":{"type":"object","properties":{"host":{"type":"string","minLength":1},"port":{"type":"integer","minimum":1,"maximum":65535},"weight":{"type":"integer","minimum":0},"priority":{"type":"integer","default":0},"metadata":{"type":"object"}},"required":["host","weight"],"additionalProperties":false}}]},
          "hash_on":{"type":"string","enum":["vars","header","cookie","consumer","vars_combinations"],"default":"vars"},
          "key":{"type":"string","description":"required when type is chash"},
          "retries":{"type":"integer","minimum":0},
          "retry_timeout":{"type":"number","minimum":0,"default":0},
          "timeout":\(timeout),
          "pass_host":{"type":"string","enum":["pass","node","rewrite"],"default":"pass"},
          "upstream_host":{"type":"string","description":"required when pass_host is rewrite"},
          "scheme":{"type":"string","enum":["http","https"],"default":"http"},
          "tls":{"type":"object","properties":{"verify":{"type":"boolean","default":false},"client_cert":{"type":"string","minLength":128,"maxLength":65536},"client_key":{"type":"string","minLength":128,"maxLength":65536},"client_cert_id":\(id)},"dependencies":{"client_cert":["client_key"],"client_key":["client_cert"]},"additionalProperties":false},
          "keepalive_pool":{"type":"object","properties":{"size":{"type":"integer","minimum":1,"default":320},"idle_timeout":{"type":"number","minimum":0,"default":60},"requests":{"type":"integer","minimum":1,"default":1000}},"additionalProperties":false},
          \(checksSchema)
          "name":{"type":"string","minLength":1,"maxLength":256},
          "desc":{"type":"string","maxLength":256},
          "labels":\(labels),
          "discovery_type":{"type":"string","enum":["kubernetes"],"description":"nodes come from service discovery instead of nodes"},
          "service_name":{"type":"string","pattern":"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9]*[a-z0-9])?$","description":"namespace/name:port, port being the Service port's name or number"},
          "create_time":{"type":"integer"},"update_time":{"type":"integer"}},
         "oneOf":[{"required":["nodes"]},{"required":["discovery_type","service_name"]}],
         "additionalProperties":false}
        """

    static let route = """
        {"type":"object","properties":{
          "id":\(id),
          "uri":{"type":"string","minLength":1,"maxLength":4096,"pattern":"^/"},
          "uris":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"string","pattern":"^/"}},
          "host":{"type":"string"},"hosts":\(hosts),
          "methods":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"string","enum":["GET","POST","PUT","DELETE","PATCH","HEAD","OPTIONS","CONNECT","TRACE","PURGE"]}},
          "remote_addr":{"type":"string"},"remote_addrs":{"type":"array","minItems":1,"items":{"type":"string","description":"IPv4/IPv6 address or CIDR"}},
          "vars":{"type":"array","description":"lua-resty-expr expressions: [[var, op, value], ...]"},
          "priority":{"type":"integer","default":0},
          "upstream":\(upstream),
          "upstream_id":\(id),"service_id":\(id),"plugin_config_id":\(id),
          "plugins":\(plugins),
          "enable_websocket":{"type":"boolean"},
          "status":{"type":"integer","enum":[0,1],"default":1},
          "timeout":\(timeout),
          "name":{"type":"string","minLength":1,"maxLength":100},
          "desc":{"type":"string","maxLength":256},
          "labels":\(labels),
          "create_time":{"type":"integer"},"update_time":{"type":"integer"}},
         "oneOf":[{"required":["uri"]},{"required":["uris"]}],
         "anyOf":[{"required":["upstream"]},{"required":["upstream_id"]},{"required":["service_id"]},{"required":["plugins"]},{"required":["plugin_config_id"]}],
         "additionalProperties":false}
        """

    static let service = """
        {"type":"object","properties":{
          "id":\(id),"upstream":\(upstream),"upstream_id":\(id),"plugins":\(plugins),"hosts":\(hosts),
          "enable_websocket":{"type":"boolean"},"name":{"type":"string","minLength":1,"maxLength":100},
          "desc":{"type":"string","maxLength":256},"labels":\(labels),
          "create_time":{"type":"integer"},"update_time":{"type":"integer"}},
         "additionalProperties":false}
        """

    static let consumer = """
        {"type":"object","properties":{
          "username":{"type":"string","minLength":1,"maxLength":100,"pattern":"^[a-zA-Z0-9_-]+$"},
          "plugins":\(plugins),"desc":{"type":"string","maxLength":256},"labels":\(labels),
          "create_time":{"type":"integer"},"update_time":{"type":"integer"}},
         "required":["username"],"additionalProperties":false}
        """

    static let pluginSet = """
        {"type":"object","properties":{
          "id":\(id),"plugins":\(plugins),"name":{"type":"string","minLength":1,"maxLength":100},
          "desc":{"type":"string","maxLength":256},"labels":\(labels),
          "create_time":{"type":"integer"},"update_time":{"type":"integer"}},
         "required":["plugins"],"additionalProperties":false}
        """

    static let pem = #"{"type":"string","minLength":128,"maxLength":65536}"#
    static let sni = #"{"type":"string","pattern":"^\\*?[0-9a-zA-Z-._]+$"}"#

    static let ssl = """
        {"type":"object","properties":{
          "id":\(id),
          "type":{"type":"string","enum":["server","client"],"default":"server"},
          "cert":\(pem),"key":\(pem),
          "certs":{"type":"array","maxItems":8,"items":\(pem)},"keys":{"type":"array","maxItems":8,"items":\(pem)},
          "sni":\(sni),"snis":{"type":"array","minItems":1,"maxItems":1024,"items":\(sni)},
          "client":{"type":"object","properties":{"ca":\(pem),"depth":{"type":"integer","minimum":0,"maximum":16,"default":1},
            "skip_mtls_uri_regex":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"string"}}},"required":["ca"],"additionalProperties":false},
          "ssl_protocols":{"type":"array","minItems":1,"uniqueItems":true,"items":{"type":"string","enum":["TLSv1.1","TLSv1.2","TLSv1.3"]}},
          "status":{"type":"integer","enum":[0,1],"default":1},
          "labels":\(labels),"desc":{"type":"string","maxLength":256},
          "validity_start":{"type":"integer"},"validity_end":{"type":"integer"},
          "create_time":{"type":"integer"},"update_time":{"type":"integer"}},
         "required":["cert","key"],
         "if":{"properties":{"type":{"const":"client"}},"required":["type"]},
         "else":{"oneOf":[{"required":["sni"]},{"required":["snis"]}]},
         "additionalProperties":false}
        """

    public static func schema(for kind: ResourceKind) -> JSONValue? {
        let text: String
        switch kind {
        case .routes: text = route
        case .upstreams: text = upstream
        case .services: text = service
        case .consumers: text = consumer
        case .pluginConfigs, .globalRules: text = pluginSet
        case .ssls: text = ssl
        case .streamRoutes: return nil
        }
        return try? JSONValue.parse(text)
    }
}
