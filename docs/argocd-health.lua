-- Argo CD health of a sluice Canary (resource.customizations.health.sluice.dev_Canary in
-- argocd-cm). It reads the kstatus conditions sluice writes: Stalled (a rollback, an
-- inconclusive end, an invalid spec) is Degraded, Reconciling (a release in flight) is
-- Progressing, Ready is Healthy. A status older than the spec, or none yet, is Progressing.
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for sluice to reconcile the Canary"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "sluice has not yet seen generation " .. tostring(generation)
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is set: sluice changes nothing"
  return hs
end
local conditions = {}
for _, condition in ipairs(status.conditions or {}) do
  conditions[condition.type] = condition
end
local function says(kind)
  local condition = conditions[kind]
  return condition ~= nil and condition.status == "True", condition
end
local stalled, stalled_condition = says("Stalled")
if stalled then
  hs.status = "Degraded"
  hs.message = stalled_condition.reason .. ": " .. (stalled_condition.message or "")
  return hs
end
local reconciling, reconciling_condition = says("Reconciling")
if reconciling then
  hs.status = "Progressing"
  hs.message = (status.phase or reconciling_condition.reason) .. ": " .. (status.message or "")
  return hs
end
local ready = says("Ready")
if ready then
  hs.status = "Healthy"
  hs.message = (status.phase or "Ready") .. ": " .. (status.message or "")
  return hs
end
hs.status = "Progressing"
hs.message = status.message or "waiting for sluice's conditions"
return hs
