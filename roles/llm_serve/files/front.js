// gpufleet serving front (role llm_serve): API key check for the nginx front, and the token counts
// for the audit log. Loaded by /etc/gpufleet/front/nginx.conf (js_import front from front.js).
//
// Keys: the global gpufleet_keys (js_preload_object from keys.json): {"keys": [{name, sha256, models,
// scopes}]}. A request presents "Authorization: Bearer <key>" or "x-api-key: <key>"; its sha256 is
// looked up. The key itself is never logged, stored or echoed.
//
// Variables (js_var in nginx.conf; kept across r.internalRedirect and read by the audit log):
// $gpufleet_key (the key's name, "-" when none), $gpufleet_model, $gpufleet_prompt_tokens,
// $gpufleet_completion_tokens.

var crypto = require('crypto');

var SCAN_LIMIT = 4096;  // bytes kept from a "usage" object cut by a chunk boundary

function keysByDigest() {
    var byDigest = {};
    var keys = (typeof gpufleet_keys === 'object' && gpufleet_keys && gpufleet_keys.keys) || [];
    for (var i = 0; i < keys.length; i++) {
        byDigest[keys[i].sha256] = keys[i];
    }
    return byDigest;
}

function presentedKey(r) {
    var auth = r.headersIn['Authorization'];
    if (auth) {
        var m = /^\s*Bearer\s+(\S+)\s*$/i.exec(auth);
        return m ? m[1] : '';
    }
    var x = r.headersIn['X-Api-Key'];
    return x ? x.trim() : '';
}

function refuse(r, status, type, message) {
    r.headersOut['Content-Type'] = 'application/json';
    if (status === 401) {
        r.headersOut['WWW-Authenticate'] = 'Bearer';
    }
    r.return(status, JSON.stringify({error: {message: message, type: type, code: status}}) + '\n');
}

// The key presented, or null (and nothing more to do) when the request was refused.
function authenticate(r) {
    var token = presentedKey(r);
    if (!token) {
        refuse(r, 401, 'missing_api_key',
               'an API key is required: send "Authorization: Bearer <key>" (or "x-api-key: <key>")');
        return null;
    }
    var key = keysByDigest()[crypto.createHash('sha256').update(token).digest('hex')];
    if (!key) {
        refuse(r, 401, 'invalid_api_key', 'the API key is not valid');
        return null;
    }
    r.variables.gpufleet_key = key.name;
    return key;
}

// Preloaded (js_preload_object) arrays are read-only and have no Array methods: plain loops.
function contains(list, value) {
    for (var i = 0; i < list.length; i++) {
        if (list[i] === value) {
            return true;
        }
    }
    return false;
}

function hasScope(key, scope) {
    return contains(key.scopes, scope);
}

function mayUse(key, model) {
    return contains(key.models, '*') || contains(key.models, model);
}

// The "model" of a request body; '' when there is none; null when the body is not usable.
function requestedModel(r) {
    var text;
    try {
        text = r.requestText;
    } catch (e) {
        return null;  // the body went to a file: larger than client_body_buffer_size
    }
    if (!text) {
        return '';
    }
    var body;
    try {
        body = JSON.parse(text);
    } catch (e) {
        return null;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return null;
    }
    if (body.model === undefined) {
        return '';
    }
    return typeof body.model === 'string' ? body.model : null;
}

// Every route but /metrics: a key with the inference scope, allowed the requested model.
function inference(r) {
    var key = authenticate(r);
    if (!key) {
        return;
    }
    if (!hasScope(key, 'inference')) {
        refuse(r, 403, 'forbidden', 'this API key may not call the inference routes');
        return;
    }
    var model = requestedModel(r);
    if (model === null) {
        refuse(r, 400, 'invalid_request', 'the request body must be a JSON object with a string "model"');
        return;
    }
    if (model) {
        r.variables.gpufleet_model = model;
        if (!mayUse(key, model)) {
            refuse(r, 403, 'forbidden', 'this API key may not use the model ' + JSON.stringify(model));
            return;
        }
    }
    r.internalRedirect('@engine');
}

// /metrics: from an allowlisted address (llm_serve_metrics_allow), or with a key that has the
// metrics scope.
function metrics(r) {
    if (r.variables.gpufleet_metrics_address === '1') {
        var token = presentedKey(r);
        var key = token && keysByDigest()[crypto.createHash('sha256').update(token).digest('hex')];
        if (key) {
            r.variables.gpufleet_key = key.name;
        }
        r.internalRedirect('@engine');
        return;
    }
    var known = authenticate(r);
    if (!known) {
        return;
    }
    if (!hasScope(known, 'metrics')) {
        refuse(r, 403, 'forbidden', 'this API key may not read /metrics (it needs the metrics scope)');
        return;
    }
    r.internalRedirect('@engine');
}

// The engine's response body, passed on unchanged and at once (streamed tokens must not wait),
// scanned for the OpenAI "usage" object: the last one seen wins (a stream with usage sends it in
// its final event; the events before carry "usage": null).
var pending = '';

function usage(r, data, flags) {
    r.sendBuffer(data, flags);
    var text = pending + data.toString();
    var at = text.lastIndexOf('"usage"');
    if (at < 0) {
        pending = text.slice(-8);  // '"usage"' may be cut by the chunk boundary
        return;
    }
    var rest = text.slice(at);
    var prompt = /"prompt_tokens"\s*:\s*(\d+)/.exec(rest);
    var completion = /"completion_tokens"\s*:\s*(\d+)/.exec(rest);
    if (prompt) {
        r.variables.gpufleet_prompt_tokens = prompt[1];
    }
    if (completion) {
        r.variables.gpufleet_completion_tokens = completion[1];
    }
    if (prompt && completion) {
        pending = '';
    } else if (/^"usage"\s*:\s*null/.test(rest)) {
        pending = text.slice(-8);
    } else {
        pending = rest.slice(0, SCAN_LIMIT);  // cut by the chunk boundary: read on with the next chunk
    }
}

export default {inference, metrics, usage};
