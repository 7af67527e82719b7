-- Argo CD health check for serving.triton-operator.dev/InferenceService.
-- Install it under `resource.customizations.health.serving.triton-operator.dev_InferenceService` in argocd-cm.
-- It reads only what the operator promises: observedGeneration, the positive-polarity Ready condition and phase.
local hs = {}
if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local ready = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
local phase = obj.status.phase or "Unknown"
local message = phase
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  message = phase .. ": " .. ready.message
end
hs.message = message
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Degraded" then
  hs.status = "Degraded"
else
  -- Pending, Scheduling and Loading are on their way (a GPU model can take minutes to load).
  hs.status = "Progressing"
end
return hs
